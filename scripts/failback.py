#!/usr/bin/env python3
"""Move the app back from the AWS standby to Heroku: python scripts/failback.py --help"""

import sys

from standby.commands.failback import main

if __name__ == "__main__":
    sys.exit(main())
