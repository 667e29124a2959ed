#!/usr/bin/env python3
"""Roll a faulty release back on Heroku: python scripts/rollback.py --help"""

import sys

from standby.commands.rollback import main

if __name__ == "__main__":
    sys.exit(main())
