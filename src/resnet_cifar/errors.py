"""UserError: what the CLI prints as one line (exit code 2) instead of a traceback.

Raise it at the boundary with a message that says what is wrong, where, and how to fix it, naming
a setting by key and flag, "`lr` (--lr)" (config.key). Anything else that escapes is a bug.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input: bad flag, missing data, foreign checkpoint, ..."""


class DataError(UserError):
    """The dataset could not be found, downloaded, verified or decoded."""


class CheckpointError(UserError):
    """A checkpoint is truncated, foreign, unsafe or for a different model."""


class ConfigError(UserError):
    """A config file or flag has an unknown key or a value of the wrong type."""
