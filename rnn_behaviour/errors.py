"""Errors that are the user's to fix (a bad data file, a bad config value), not bugs.

`main.py` reports a `UserError` as one line and exit code 2, without a traceback; any other
exception is a bug and keeps its traceback. Raise a subclass that also derives from the
built-in class callers already catch (`ValueError`, `FileNotFoundError`), so that code and
tests written against those keep working.
"""

from __future__ import annotations


class UserError(Exception):
  """Base of every error whose message alone tells the user what to fix."""


class DataError(UserError, ValueError):
  """A data file (or the data block of a config) that cannot be read as trials: the message
  names the file, the line or row and the field."""


class DataFileNotFound(UserError, FileNotFoundError):
  """The data file a config names does not exist."""


class ConfigError(UserError, ValueError):
  """A config field whose value cannot work; the message names `config.<block>.<field>`."""
