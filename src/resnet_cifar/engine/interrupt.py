"""Graceful stop on SIGINT/SIGTERM: finish the step, save, tell the user how to resume.

The first signal only sets a flag that the training loop checks after each step. A second SIGINT
means "now": it raises KeyboardInterrupt at once. last.pt is still the latest save (the previous
epoch's end, or a mid-epoch save of `save_every`), because it is only ever replaced atomically.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class StopRequested(Exception):
    """Raised by the loop after it has saved its state; carries the exit code."""

    def __init__(self, exit_code: int, message: str):
        super().__init__(message)
        self.exit_code = exit_code


class GracefulStop:
    """Context manager that turns SIGINT/SIGTERM into ``self.signal`` (None until one arrives)."""

    def __init__(self, on_signal: Callable[[str], None] | None = None):
        self.signal: signal.Signals | None = None
        self._previous: dict[int, object] = {}
        self.on_signal = on_signal  # also given the message printed (the run's train.log)

    @property
    def requested(self) -> bool:
        return self.signal is not None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signal, 1)

    def request(self, signum: int = signal.SIGINT) -> None:
        """Ask the loop to stop, as a signal would (also used by tests and callbacks)."""
        self.signal = signal.Signals(signum)

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.requested and signum == signal.SIGINT:
            self._tell(f"second {name}: quitting at once; last.pt keeps its latest save")
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        self.request(signum)
        print()
        self._tell(f"{name} received: finishing this step and saving last.pt "
                   "(Ctrl-C again to quit at once)")

    def _tell(self, message: str) -> None:
        print(message, flush=True)
        if self.on_signal is not None:
            self.on_signal(message)

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for sig in EXIT_CODES:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
