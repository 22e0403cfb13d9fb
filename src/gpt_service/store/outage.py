"""Logging a database outage from a background loop: once when it starts, then once a minute
while it lasts (not once per poll), and once when the store answers again."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

REPEAT_SECONDS = 60.0


class OutageLog:
    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        repeat_seconds: float = REPEAT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.what = what  # e.g. "training scheduler"
        self.repeat_seconds = repeat_seconds
        self.clock = clock
        self.since: float | None = None  # when the outage began (None: no outage)
        self._logged = 0.0

    def failed(self, message: str) -> None:
        now = self.clock()
        if self.since is None:
            self.since = self._logged = now
            self.logger.warning("%s: %s", self.what, message)
        elif now - self._logged >= self.repeat_seconds:
            self._logged = now
            self.logger.warning(
                "%s: still failing after %.0f s: %s", self.what, now - self.since, message
            )

    def ok(self) -> None:
        if self.since is not None:
            self.logger.info(
                "%s: the job store answers again (after %.0f s)",
                self.what,
                self.clock() - self.since,
            )
            self.since = None
