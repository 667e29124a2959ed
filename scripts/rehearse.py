#!/usr/bin/env python3
"""Rehearse a disaster on this machine: python scripts/rehearse.py [--scenario heroku-down|graceful|region-down]"""

import os
import sys

from standby.commands.rehearse import main

if __name__ == "__main__":
    code = main()
    # Everything the rehearsal started is stopped and deleted by now. What is left is freeing moto's AWS
    # models, which held in this process take the interpreter about two seconds to tear down.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
