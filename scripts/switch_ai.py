#!/usr/bin/env python3
"""Switch the app's AI provider (OpenAI <-> Anthropic), probed first: python scripts/switch_ai.py --help"""

import sys

from standby.commands.switch_ai import main

if __name__ == "__main__":
    sys.exit(main())
