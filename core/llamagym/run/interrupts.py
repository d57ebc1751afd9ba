"""Stopping a run politely: the first SIGINT (Ctrl-C) or SIGTERM (a scheduler's preemption) asks the run to stop
at the next episode boundary, where it checkpoints and exits; a second one stops it at once."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Which signal asked the run to stop (None while none has)."""

    def __init__(self) -> None:
        self.signal: int | None = None

    @property
    def requested(self) -> bool:
        return self.signal is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signal).name if self.signal is not None else ""

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process that a signal ended (130 for Ctrl-C)."""
        return 128 + self.signal if self.signal is not None else 0


class ForcedStop(KeyboardInterrupt):
    """A second signal: stop now, without the final checkpoint (the weights may be mid-update)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signal = signum


@contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """Install the handlers for the duration of a run (only in the main thread, and not for a signal the
    process was started ignoring)."""
    request = StopRequest()

    def handler(signum: int, frame: Any) -> None:
        if request.requested:
            raise ForcedStop(signum)
        request.signal = signum

    previous = {}
    for signum in SIGNALS:
        if signal.getsignal(signum) is signal.SIG_IGN:  # e.g. SIGINT of a background job: stays ignored
            continue
        try:
            previous[signum] = signal.signal(signum, handler)
        except ValueError:  # not the main thread
            pass
    try:
        yield request
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
