"""One module per command; `scripts/<command>.py` only calls its `main`."""
