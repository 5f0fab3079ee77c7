"""Signals during a sweep: the first SIGINT/SIGTERM stops it cleanly, a repeated one cannot cut that short."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

from orchestrator.errors import Interrupted


class SignalGuard:
    """While a sweep runs, the first SIGINT/SIGTERM interrupts it; any later one is counted, not obeyed.

    The first signal unwinds like Ctrl-C (``KeyboardInterrupt`` / ``Interrupted``) so the running container is
    killed and removed and the manifest says ``interrupted``. A second Ctrl-C, or a supervisor repeating its
    SIGTERM, must not cut that cleanup short: it would leave a manifest saying ``running`` and a traceback.
    """

    def __init__(self) -> None:
        self.armed = True  # False once the sweep is past the point where an interrupt could stop anything

    def handler(self, signum: int, _frame: Any) -> None:
        if self.armed:
            self.armed = False
            raise KeyboardInterrupt if signum == signal.SIGINT else Interrupted(signum)


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[SignalGuard]:
    """Install a ``SignalGuard`` for SIGINT and SIGTERM (main thread only), restoring the old handlers after."""
    guard = SignalGuard()
    previous: dict[int, Any] = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, guard.handler)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        yield guard
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
