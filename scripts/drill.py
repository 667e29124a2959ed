#!/usr/bin/env python3
"""Rehearse a disaster: python scripts/drill.py --local [--scenario heroku-down|graceful|region-down]"""

import sys

from standby.commands.drill import main

if __name__ == "__main__":
    sys.exit(main())
