"""Every Redis key forkq reads or writes, in one place.

Sidekiq-compatible keys (DESIGN.md §3) keep Sidekiq's names so that either side can read them;
forkq's own keys live under ``forkq:``. An optional namespace prefixes everything.

| key | type | writer | reader | TTL |
| --- | --- | --- | --- | --- |
| ``queues`` | set | client (SADD on push) | worker, api | none |
| ``queue:<name>`` | list | client LPUSH; recovery/requeue RPUSH | fetch (right end) | none |
| ``schedule`` | zset | client ``perform_in``/``perform_at`` | poller, api | none |
| ``retry`` | zset | processor on failure | poller, api | none |
| ``dead`` | zset | dead.py only (retry writer, processor, poller, recovery, api) | api | trimmed on add |
| ``processes`` | set | heartbeat | api, recovery | none |
| ``<identity>`` | hash | heartbeat | api, recovery | heartbeat_ttl |
| ``<identity>:work`` / ``:workers`` | hash | heartbeat | api | heartbeat_ttl |
| ``<identity>-signals`` | list | api, ctl, Sidekiq web | heartbeat | 60 s |
| ``stat:processed`` / ``stat:failed`` | string | fetch script, processor at exit | api | none |
| ``stat:<name>:YYYY-MM-DD`` | string | fetch script, processor at exit | api | 5 years |
| ``forkq:inflight:<slot>:<thread>[:alt]`` | list | fetch script (a thread's two private lists, used in turn) | recovery, master | none |
| ``forkq:slots`` | hash: slot → JSON {identity, threads} | worker at start | recovery | none |
| ``forkq:recovered:<jid>`` | zset of recovery times | recovery | recovery | 72 h |
| ``forkq:recovery-lock`` | string | recovery scan | recovery | a few seconds |
"""

from __future__ import annotations

from dataclasses import dataclass

#: seconds a daily stat key lives (Sidekiq's 5 years)
DAILY_STAT_TTL = 5 * 365 * 86400
#: seconds a remote-signal list lives after a push
SIGNALS_TTL = 60


@dataclass(frozen=True)
class Keys:
    namespace: str | None = None

    def _k(self, name: str) -> str:
        return f"{self.namespace}:{name}" if self.namespace else name

    @property
    def queues(self) -> str:
        return self._k("queues")

    def queue(self, name: str) -> str:
        return self._k(f"queue:{name}")

    @property
    def schedule(self) -> str:
        return self._k("schedule")

    @property
    def retry(self) -> str:
        return self._k("retry")

    @property
    def dead(self) -> str:
        return self._k("dead")

    @property
    def processes(self) -> str:
        return self._k("processes")

    def process(self, identity: str) -> str:
        return self._k(identity)

    def work(self, identity: str) -> str:
        return self._k(f"{identity}:work")

    def workers(self, identity: str) -> str:
        return self._k(f"{identity}:workers")

    def signals(self, identity: str) -> str:
        return self._k(f"{identity}-signals")

    def stat(self, name: str) -> str:
        return self._k(f"stat:{name}")

    def daily_stat(self, name: str, day: str) -> str:
        return self._k(f"stat:{name}:{day}")

    def inflight(self, slot: str, thread: int, side: int = 0) -> str:
        """One of a thread's two private lists (``side`` 0 or 1; see ``fetch.py``)."""
        return self._k(f"forkq:inflight:{slot}:{thread}{':alt' if side else ''}")

    def inflight_pair(self, slot: str, thread: int) -> tuple[str, str]:
        return self.inflight(slot, thread, 0), self.inflight(slot, thread, 1)

    @property
    def slots(self) -> str:
        return self._k("forkq:slots")

    def recovered(self, jid: str) -> str:
        return self._k(f"forkq:recovered:{jid}")

    @property
    def recovery_lock(self) -> str:
        return self._k("forkq:recovery-lock")
