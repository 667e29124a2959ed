"""Local stand-ins for the cloud, used by the tests and the local rehearsal: a fake Heroku API and
real PostgreSQL servers started on this machine."""
