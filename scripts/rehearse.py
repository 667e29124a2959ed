#!/usr/bin/env python3
"""Rehearse a disaster on this machine: python scripts/rehearse.py [--scenario heroku-down|graceful|region-down]"""

import sys

from standby.commands.rehearse import main

if __name__ == "__main__":
    sys.exit(main())
