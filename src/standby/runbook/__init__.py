"""Runbooks: steps run under a lock, journaled, resumable, reported (the engine), and the runbooks."""
