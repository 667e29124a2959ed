#!/usr/bin/env python3
"""Validate standby stack files: python scripts/check_config.py Pulumi.primary.yaml Pulumi.standby.yaml"""

import sys

from standby.commands.check_config import main

if __name__ == "__main__":
    sys.exit(main())
