#!/usr/bin/env python3
"""Drill the disaster against the standby, without touching production: python scripts/drill.py --app APP"""

import sys

from standby.commands.drill import main

if __name__ == "__main__":
    sys.exit(main())
