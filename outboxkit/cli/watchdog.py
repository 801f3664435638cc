"""The relay command's last resort: end the process on time when something will not stop.

The relay bounds every shutdown step itself (:mod:`outboxkit.closing`), but a step given up
on may leave a task behind that ignores cancellation, or a thread blocked in a system call,
and the event loop's own teardown would wait for them. :data:`watchdog`, armed at each stage
of stopping, ends the process with the intended exit status if the command has not returned
when the stage's time is up; ``main`` disarms it once the event loop is closed.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time

__all__ = ["Watchdog", "watchdog"]


class Watchdog:
    """Exits the process (``os._exit``) at the earliest deadline it was armed with."""

    def __init__(self) -> None:
        self._deadline = math.inf
        self._code = 0
        self._note = ""
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float, code: int, note: str) -> None:
        """Exit with ``code`` in ``seconds``, writing ``note`` to stderr, unless the process
        has ended by then. A later deadline than one already armed changes nothing."""
        with self._changed:
            deadline = time.monotonic() + seconds
            if deadline >= self._deadline:
                return
            self._deadline, self._code, self._note = deadline, code, note
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._wait, name="outboxkit-watchdog", daemon=True
                )
                self._thread.start()
            self._changed.notify()

    def disarm(self) -> None:
        """Forget every deadline."""
        with self._changed:
            self._deadline = math.inf
            self._changed.notify()

    def _wait(self) -> None:
        with self._changed:
            while (left := self._deadline - time.monotonic()) > 0:
                self._changed.wait(None if left == math.inf else left)
            code, note = self._code, self._note
        for handler in logging.getLogger().handlers:
            handler.flush()
        print(note, file=sys.stderr, flush=True)
        os._exit(code)


watchdog = Watchdog()
"""The process's watchdog (one process, one command)."""
