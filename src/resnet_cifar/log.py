"""How the library talks: the ``resnet_cifar`` logger, and whether progress bars are on.

Unless it has a handler when the library first reports, the logger prints each message, bare, to
stdout at INFO, without propagating, so a script shows what the CLI shows;
``logging.getLogger("resnet_cifar").setLevel(logging.WARNING)`` quiets it (train.log keeps all).
"""

from __future__ import annotations

import logging
import sys

_defaulted = False  # the default handler is considered once per process, not at each call


class _Stdout(logging.StreamHandler):
    """A handler on the sys.stdout of each message's moment: capsys and notebooks swap it."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):  # StreamHandler.__init__ sets it; the property decides
        pass


def logger() -> logging.Logger:
    """The ``resnet_cifar`` logger, given the default handler on first use (module docstring)."""
    global _defaulted
    log = logging.getLogger("resnet_cifar")
    if not _defaulted:
        _defaulted = True
        if not log.handlers:  # the user has configured nothing: print as the CLI does
            log.addHandler(_Stdout())
            log.propagate = False
            if log.level == logging.NOTSET:
                log.setLevel(logging.INFO)
    return log


def in_notebook() -> bool:
    """Running in a Jupyter kernel (IPython is then imported already, so this imports nothing)."""
    get_ipython = getattr(sys.modules.get("IPython"), "get_ipython", None)
    return get_ipython is not None and hasattr(get_ipython(), "kernel")


def default_progress() -> bool:
    """Progress bars unless told otherwise: on a terminal, or in a notebook."""
    return sys.stdout.isatty() or in_notebook()
