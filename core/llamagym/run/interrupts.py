"""Stopping a run politely: the first SIGINT (Ctrl-C) or SIGTERM (a scheduler's preemption) asks the run to stop
at the next episode boundary, where it checkpoints and exits; a second one stops it at once. A time limit
(`max_minutes`) stops it too, but only where it commits (right after an update), so no episode played is lost."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)
# `llamagym run --num-processes N`: the launcher answers Ctrl-C by writing the signal's number to this file, which
# every process reads at its next update (a terminal's Ctrl-C reaches them all at once, and would otherwise count
# twice wherever the launcher passed it on)
STOP_FILE_ENV = "LLAMAGYM_STOP_FILE"


class StopRequest:
    """Which signal asked the run to stop (None while none has), by a handler or through the stop file; and
    whether the run's clock has passed its time limit at a commit (`timed_out`)."""

    def __init__(self, file: Path | None = None) -> None:
        self.signal: int | None = None
        self.file = file
        self.timed_out = False
        self.limit: tuple[float, Callable[[], float]] | None = None

    def set_time_limit(self, seconds: float, clock: Callable[[], float]) -> None:
        """Stop at the first commit at which `clock()` (the run's training seconds) has reached `seconds`."""
        self.limit = (seconds, clock)

    def committed(self) -> None:
        """The run just committed (nothing waits untrained): past the time limit, it stops here."""
        if self.limit is not None and self.limit[1]() >= self.limit[0]:
            self.timed_out = True

    @property
    def signalled(self) -> bool:
        if self.signal is None and self.file is not None and self.file.is_file():
            text = self.file.read_text(encoding="utf-8").strip()
            self.signal = int(text) if text.isdigit() else int(signal.SIGTERM)
        return self.signal is not None

    @property
    def requested(self) -> bool:
        return self.signalled or self.timed_out

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
    request = StopRequest(Path(os.environ[STOP_FILE_ENV]) if os.environ.get(STOP_FILE_ENV) else None)

    def handler(signum: int, frame: Any) -> None:
        if request.signalled:
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
