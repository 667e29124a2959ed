#!/usr/bin/env python3
"""Back up the app's database to the standby's bucket, or list backups: python scripts/backup.py --help"""

import sys

from standby.commands.backup import main

if __name__ == "__main__":
    sys.exit(main())
