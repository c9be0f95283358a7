"""The one exception type the CLI turns into a one-line message instead of a traceback.

Raise UserError at the boundary (a path, a flag, a file the user gave us) with a message that
says what is wrong, where, and how to fix it. Anything else that escapes is a bug and keeps its
traceback.

A message names a setting by its config key and its flag, "`lr` (--lr)" (config.key writes
that from config.FLAG_OF): a library user reads the key, a command-line user the flag. A setting
without a flag keeps its key alone, "`data.fingerprint`".
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
