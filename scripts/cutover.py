#!/usr/bin/env python3
"""Cut the app over from Heroku to the AWS standby: python scripts/cutover.py --help"""

import sys

from standby.commands.cutover import main

if __name__ == "__main__":
    sys.exit(main())
