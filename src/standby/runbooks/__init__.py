"""The runbooks: each a list of steps for `standby.runbook.engine`."""
