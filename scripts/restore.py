#!/usr/bin/env python3
"""Restore the newest verified backup into the standby's database: python scripts/restore.py --help"""

import sys

from standby.commands.restore import main

if __name__ == "__main__":
    sys.exit(main())
