"""The one exception type the CLI turns into a one-line message instead of a traceback, and how
the library names a setting in what it tells the user.

Raise UserError at the boundary (a path, a flag, a file the user gave us) with a message that
says what is wrong, where, and how to fix it. Anything else that escapes is a bug and keeps its
traceback.

The library speaks in config keys, never in command-line flags: a message names a setting by its
key in backticks, `lr` or `data.val_split` (``key("lr")`` writes that). A library user reads the
key as written; the CLI installs its table of flags (``name_settings_with``) and the same message
then reads --lr or --val-split. Backticked text that is not a setting the table knows
(`resnet-cifar models`) is left alone.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator

# A backticked config key or parameter name: `lr`, `data.val_split`, `model_kwargs.shortcut`.
SETTING = re.compile(r"`([a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*)`")

# How a setting is named to the user: None keeps the config key; the CLI installs its flags.
_setting_name: Callable[[str], str | None] | None = None


def key(name: str) -> str:
    """A config key as a message names it (rendered as a flag by the CLI)."""
    return f"`{name}`"


def name_settings_with(name: Callable[[str], str | None] | None) -> None:
    """Name settings in every later message by ``name(key)`` (None: keep the key as written)."""
    global _setting_name
    _setting_name = name


def render_settings(text: str, naming: Callable[[str], str | None] | None = None) -> str:
    """``text`` with each backticked setting named by ``naming`` (default: the installed one)."""
    naming = naming or _setting_name
    if naming is None:
        return text

    def replace(match: re.Match) -> str:
        return naming(match.group(1)) or match.group(0)

    return SETTING.sub(replace, text)


@contextlib.contextmanager
def settings_named_by(name: Callable[[str], str | None]) -> Iterator[None]:
    """Name settings by ``name(key)`` inside the block (a CLI command), as before after it."""
    previous = _setting_name
    name_settings_with(name)
    try:
        yield
    finally:
        name_settings_with(previous)


class UserError(Exception):
    """A problem with the user's input: bad flag, missing data, foreign checkpoint, ..."""

    def __str__(self) -> str:
        return render_settings(super().__str__())


class DataError(UserError):
    """The dataset could not be found, downloaded, verified or decoded."""


class CheckpointError(UserError):
    """A checkpoint is truncated, foreign, unsafe or for a different model."""


class ConfigError(UserError):
    """A config file or flag has an unknown key or a value of the wrong type."""
