"""Slows down password guessing: a token bucket of failed logins per client address.

Each address may get ``burst`` passwords wrong at once, then one more every ``refill`` seconds;
while its bucket is empty its new credentials are refused with 429 before any password check
(so guessing also cannot burn the CPU that PBKDF2 costs). A check takes a token first and a
correct password gives it back, so parallel connections cannot check more than the bucket
holds, and only failures cost anything: a correct login from another address is never slowed,
nor credentials this process already verified.

Behind a reverse proxy every client has the proxy's address, so the bucket is shared: a
guesser then also delays new logins of others (not the sessions already logged in).
"""

from __future__ import annotations

import threading
import time

#: wrong passwords an address may send at once
BURST = 5
#: seconds that give an address back one attempt
REFILL = 2.0
#: addresses remembered at most; full buckets are forgotten first
MAX_CLIENTS = 10_000


class LoginThrottle:
    def __init__(self, burst: int = BURST, refill: float = REFILL,
                 max_clients: int = MAX_CLIENTS, clock=time.monotonic) -> None:
        self.burst = burst
        self.refill = refill
        self.max_clients = max_clients
        self.clock = clock
        self._lock = threading.Lock()
        #: address -> (tokens, when they were counted)
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, address: str) -> float:
        """Takes one attempt of ``address``: 0 when taken, else the seconds until one is left."""
        with self._lock:
            now = self.clock()
            tokens = self._tokens(address, now)
            if tokens < 1:
                return (1 - tokens) * self.refill
            if address not in self._buckets and len(self._buckets) >= self.max_clients:
                self._forget_full(now)
            self._buckets[address] = (tokens - 1, now)
            return 0.0

    def give_back(self, address: str) -> None:
        """The attempt taken was a correct password: it costs nothing."""
        with self._lock:
            now = self.clock()
            if address in self._buckets:
                self._buckets[address] = (min(self.burst, self._tokens(address, now) + 1), now)

    def _tokens(self, address: str, now: float) -> float:
        tokens, counted = self._buckets.get(address, (self.burst, now))
        return min(self.burst, tokens + (now - counted) / self.refill)

    def _forget_full(self, now: float) -> None:
        full = [a for a in self._buckets if self._tokens(a, now) >= self.burst]
        for address in full:
            del self._buckets[address]
        if len(self._buckets) >= self.max_clients:
            # Every bucket is in use: an attack from very many addresses. Forgetting them
            # all lets each try ``burst`` more, which bounds memory at a small cost.
            self._buckets.clear()
