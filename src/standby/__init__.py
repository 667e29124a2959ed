"""standby: keep a Heroku app recoverable on AWS, and carry out the recovery."""

__version__ = "0.1.0"
