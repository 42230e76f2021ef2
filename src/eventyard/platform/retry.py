"""Retries of the control plane's cluster calls: a broker that was just restarted, or unreachable
for a moment, should cost a short delay rather than a failed request. Only operations that are safe
to repeat go through `retrying` (reads, upserts, deletions that ignore what is already gone), and
only errors marked transient are tried again, with a short doubling backoff, within a deadline."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from eventyard.platform.errors import ClusterError

log = logging.getLogger(__name__)

T = TypeVar("T")

DEADLINE_S = 20.0  # all attempts of one operation together
ATTEMPT_TIMEOUT_S = 15.0  # at most, for one attempt
MIN_ATTEMPT_TIMEOUT_S = 1.0
FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 2.0


class TransientError(ClusterError):
    """The cluster could not be reached, the connection died, or it answered with an error that
    says "try again" (a timeout, no controller or coordinator yet): repeating the call may work."""


@dataclass(frozen=True, slots=True)
class Attempt:
    number: int  # 1 for the first
    timeout: float  # what this attempt may spend waiting for the cluster

    @property
    def is_retry(self) -> bool:
        return self.number > 1


def retrying(what: str, call: Callable[[Attempt], T], deadline_s: float = DEADLINE_S) -> T:
    """call(attempt) until it returns or raises anything but TransientError; the last
    TransientError (a ClusterError, 502 to API clients) once the deadline leaves no room."""
    end = time.monotonic() + deadline_s
    backoff = FIRST_BACKOFF_S
    number = 0
    while True:
        number += 1
        remaining = end - time.monotonic()
        timeout = min(ATTEMPT_TIMEOUT_S, max(MIN_ATTEMPT_TIMEOUT_S, remaining))
        try:
            return call(Attempt(number, timeout))
        except TransientError as exc:
            if end - time.monotonic() <= backoff:
                log.warning("%s: giving up after %d attempts: %s", what, number, exc.message)
                raise
            log.info("%s: %s; trying again in %.1fs", what, exc.message, backoff)
            time.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)
