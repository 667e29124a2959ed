#!/usr/bin/env python3
"""Is the standby ready for a disaster right now? Checks, score, RTO forecast: python scripts/status.py --help"""

import sys

from standby.commands.status import main

if __name__ == "__main__":
    sys.exit(main())
