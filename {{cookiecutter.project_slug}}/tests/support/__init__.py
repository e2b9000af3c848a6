"""Test support shared by several test packages: builders of data, models and captures, and the
local stand-ins of GitHub's REST API and of a `docker` client. Fixtures built on them live in the
conftest.py files."""
