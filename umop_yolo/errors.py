"""The one family of errors caused by the user's input.

The CLI prints these as one line (`umop: error: ...`) and exits with status 2. Any other exception is a bug and keeps
its traceback. Both classes subclass the built-in errors a library user would catch (ValueError, FileNotFoundError).
"""

from __future__ import annotations


class UserInputError(ValueError):
    """A bad key, value, file or line in what the user gave; the message is one line naming it."""


class InputNotFoundError(UserInputError, FileNotFoundError):
    """A file or folder the user named does not exist."""
