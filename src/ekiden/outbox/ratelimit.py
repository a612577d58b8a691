"""A token bucket per SMTP provider, shared by every transport in the process."""

from __future__ import annotations

import threading
import time


class RateLimiter:
    """Allows ``rate`` events per second on average with bursts of up to one second's worth;
    ``rate`` 0 means unlimited. ``wait`` blocks (real time) until the next event may go."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._capacity = max(rate, 1.0)
        self._tokens = self._capacity
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        if self.rate <= 0:
            return
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= 1
            shortfall = -self._tokens
        if shortfall > 0:
            time.sleep(shortfall / self.rate)


_limiters: dict[tuple[str, float], RateLimiter] = {}
_limiters_lock = threading.Lock()


def limiter_for(provider: str, rate: float) -> RateLimiter:
    """The process-wide limiter of ``provider`` (host:port) at ``rate`` messages/second."""
    with _limiters_lock:
        return _limiters.setdefault((provider, rate), RateLimiter(rate))
