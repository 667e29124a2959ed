"""Readiness: is the standby ready for a disaster right now? (`scripts/status.py`, docs/readiness.md)

Each check reads the world (the backups, Heroku, the standby's AWS resources, the drills) and says ok,
warning or critical, with the fix; the score weighs them. The standby stack runs the same checks after
each backup and daily, and alarms on the critical ones.
"""
