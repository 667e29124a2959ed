#!/usr/bin/env python3
"""Recover the app's database on Heroku: python scripts/recover_db.py --help"""

import sys

from standby.commands.recover_db import main

if __name__ == "__main__":
    sys.exit(main())
