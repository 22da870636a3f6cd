r"""Every Redis key forkq reads or writes, in one place.

Sidekiq-compatible keys (DESIGN.md §3) keep Sidekiq's names so that either side can read them;
forkq's own keys live under ``forkq:``. An optional namespace prefixes everything.

| key | type | writer | reader | TTL |
| --- | --- | --- | --- | --- |
| ``queues`` | set | client (SADD on push) | worker, api | none |
| ``queue:<name>`` | list | client LPUSH; recovery/requeue RPUSH | fetch (right end) | none |
| ``schedule`` | zset | client ``perform_in``/``perform_at``; processor (over-limit reschedule, ``postpone.py``) | poller, api | none |
| ``retry`` | zset | processor on failure | poller, api | none |
| ``dead`` | zset | dead.py only (retry writer, processor, poller, recovery, api) | api | trimmed on add |
| ``processes`` | set | heartbeat | api, recovery | none |
| ``<identity>`` | hash | heartbeat | api, recovery | heartbeat_ttl |
| ``<identity>:work`` / ``:workers`` | hash | heartbeat | api | heartbeat_ttl |
| ``<identity>-signals`` | list | api, ctl, Sidekiq web | heartbeat | 60 s |
| ``stat:processed`` / ``stat:failed`` | string | ``STATS_LUA``: fetch script, coroutine ack, flush at exit | api | none |
| ``stat:<name>:YYYY-MM-DD`` | string | ``STATS_LUA``: fetch script, coroutine ack, flush at exit | api | 5 years |
| ``j|YYMMDD|H:MM`` / ``j|YYMMDD|H:M`` | hash: ``<class>|p``, ``|f``, ``|ms`` | heartbeat (jobmetrics flush) | web, Sidekiq 8 web | 8 h / 3 days |
| ``h|<class>-D-H:M`` | BITFIELD: 26 u16 execution-time buckets | heartbeat (jobmetrics flush) | web, Sidekiq 8 web | 8 h |
| ``forkq:inflight:<slot>:<thread>[:alt]`` | list | fetch script (a thread's two private lists, used in turn) | recovery, master | none |
| ``forkq:inflight:<slot>:async`` | list | processor thread (hand-over script moves a coroutine job in) | coroutine runner (LREM when finished, requeue at the deadline), recovery, master | none |
| ``forkq:slots`` | hash: slot → JSON {identity, threads} | worker at start | recovery | none |
| ``forkq:recovered:<jid>`` | zset of recovery times | recovery | recovery | 72 h |
| ``forkq:recovery-lock`` | string | recovery scan | recovery | a few seconds |
| ``forkq:periodic:leader`` | string: leader identity | periodic leader (one script takes, renews or replaces it, with PX) | leader, api | lease TTL |
| ``forkq:periodic:tick:<name>:<tick>`` | string: claiming identity | periodic leader, before the enqueue | periodic leader | claim TTL |
| ``forkq:periodic:cursor`` | hash: entry name → last tick handled | periodic leader (claim script) | periodic leader | none |
| ``forkq:periodic:state`` | hash: ``<name>:last`` JSON {tick, jid, at}; ``<name>:next`` tick | periodic leader | api, web | none |
| ``forkq:unique:<digest>`` | string: holding jid | client (SET NX PX) | processor, retry writer, recovery (compare-and-delete) at start, success or death | unique_for (+ delay) |
| ``forkq:limiter:concurrent:<name>`` | zset: holder → lease expiry | limiter | limiter | lock_timeout after last use |
| ``forkq:limiter:window:<name>`` | hash: window (index since the epoch), count | limiter | limiter | to the window's end |
| ``forkq:limiter:bucket:<name>`` | hash: tokens, at | limiter | limiter | time to refill |
| ``forkq:batch:<bid>`` | hash: the batch record (``flow/batch.py``: counts, callbacks, parent, events fired) | client at the batch's commit; worker scripts at each member's end | ``flow/batch.py``, api, web | ``expires_in`` (30 days) from commit; ``keep`` (24 h) from success |
| ``forkq:batch:<bid>:pending`` / ``:unrun`` | set: jids not yet succeeded / not yet run once | client at commit and reopen; worker scripts (``flow/batch_lua.py``) | same | as the record |
| ``forkq:batch:<bid>:failed`` / ``:dead`` | hash jid → error / set of dead jids | worker scripts at a retry or death | api, web | as the record |
| ``forkq:batch:<bid>:results`` | hash: header index → JSON value (chords) | worker success script | worker success script (the chord's callback) | as the record |
| ``forkq:iteration:<jid>`` | string: JSON ``{cursor, at}`` or ``{done: true}`` | a resumable job (``flow/iterable.py``) after its items | the same job when it runs again | ``cursor_ttl`` (30 days) from each save |
| ``forkq:batches`` | zset: bid → created_at, batches not yet succeeded | client at commit; worker success script (ZREM) | api, metrics gauge (pruned of expired records) | none |
| ``forkq:result:<jid>`` | string: JSON result (status, value, errors, times) | client at enqueue, processor (or a job class owning its results) | ``forkq.results``, Django backend | the job's ``result_ttl`` from each write |
| ``forkq:done:<jid>`` | list of one item: the job reached a final status | result writer, in the script call of the final record (`results.FINISH`) | ``results.get(jid, wait=)`` (BLMOVE onto itself) | ``results.DONE_TTL`` at most |
| ``forkq:paused`` | set of paused queue names | ``flow.pause`` (api, forkqctl, web) | fetch script, control watch, api, metrics | none |
| ``forkq:cancels`` | zset: jid → Redis time of the cancel | ``flow.cancel`` | fetch script, control watch (trims past ``cancel.KEEP``) | trimmed |
| ``forkq:cancelled`` | string: jobs ended as cancelled | ``cancel.ended_cancelled`` (client or worker) | metrics, api | none |
"""

from __future__ import annotations

from dataclasses import dataclass

#: seconds a daily stat key lives (Sidekiq's 5 years)
DAILY_STAT_TTL = 5 * 365 * 86400
#: seconds a remote-signal list lives after a push
SIGNALS_TTL = 60

#: Lua for every script that counts finished jobs (the fetch, the coroutine runner's
#: acknowledgement, the flush at shutdown): ``count_stats(first, processed, failed, ttl)``
#: adds the deltas to the four keys of ``Keys.stat_keys``, which are ``KEYS[first]`` on, and
#: keeps the daily ones for ``ttl`` seconds.
STATS_LUA = """
local function count_stats(first, processed, failed, ttl)
  local deltas = {tonumber(processed), tonumber(failed)}
  for i = 1, 2 do
    if deltas[i] > 0 then
      redis.call('INCRBY', KEYS[first + i - 1], deltas[i])
      redis.call('INCRBY', KEYS[first + i + 1], deltas[i])
      redis.call('EXPIRE', KEYS[first + i + 1], ttl)
    end
  end
end
"""


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

    def stat_keys(self, day: str) -> list[str]:
        """The keys ``STATS_LUA`` counts in: processed and failed, in total and on ``day``."""
        return [self.stat("processed"), self.stat("failed"),
                self.daily_stat("processed", day), self.daily_stat("failed", day)]

    def job_metrics(self, bucket: str) -> str:
        """Sidekiq 8's per-class counts of one minute or ten (``jobmetrics``)."""
        return self._k(f"j|{bucket}")

    def job_histogram(self, class_name: str, window: str) -> str:
        """Sidekiq 8's execution-time histogram of one class and minute (``jobmetrics``)."""
        return self._k(f"h|{class_name}-{window}")

    def inflight(self, slot: str, thread: int, side: int = 0) -> str:
        """One of a thread's two private lists (``side`` 0 or 1; see ``fetch.py``)."""
        return self._k(f"forkq:inflight:{slot}:{thread}{':alt' if side else ''}")

    def inflight_pair(self, slot: str, thread: int) -> tuple[str, str]:
        return self.inflight(slot, thread, 0), self.inflight(slot, thread, 1)

    def inflight_async(self, slot: str) -> str:
        """The private list of a process's event loop: coroutine jobs it runs (``worker/coroutines.py``)."""
        return self._k(f"forkq:inflight:{slot}:async")

    @property
    def slots(self) -> str:
        return self._k("forkq:slots")

    def recovered(self, jid: str) -> str:
        return self._k(f"forkq:recovered:{jid}")

    @property
    def recovery_lock(self) -> str:
        return self._k("forkq:recovery-lock")

    @property
    def periodic_leader(self) -> str:
        return self._k("forkq:periodic:leader")

    def periodic_tick(self, name: str, tick: str) -> str:
        return self._k(f"forkq:periodic:tick:{name}:{tick}")

    @property
    def periodic_cursor(self) -> str:
        return self._k("forkq:periodic:cursor")

    @property
    def periodic_state(self) -> str:
        return self._k("forkq:periodic:state")

    def unique(self, digest: str) -> str:
        return self._k(f"forkq:unique:{digest}")

    def limiter(self, kind: str, name: str) -> str:
        return self._k(f"forkq:limiter:{kind}:{name}")

    def result(self, jid: str) -> str:
        return self._k(f"forkq:result:{jid}")

    def batch(self, bid: str) -> str:
        """A batch's record; its sets are this key plus ``:pending`` etc. (``flow/batch.py``)."""
        return self._k(f"forkq:batch:{bid}")

    @property
    def batch_prefix(self) -> str:
        """What a batch's record key is made of with its bid (the worker scripts' parents)."""
        return self._k("forkq:batch:")

    @property
    def batches(self) -> str:
        return self._k("forkq:batches")

    def iteration(self, jid: str) -> str:
        """A resumable job's saved cursor (``flow/iterable.py``)."""
        return self._k(f"forkq:iteration:{jid}")
    def done(self, jid: str) -> str:
        """The list a waiter blocks on until the job's result is final (``results.py``)."""
        return self._k(f"forkq:done:{jid}")

    @property
    def paused(self) -> str:
        return self._k("forkq:paused")

    @property
    def cancels(self) -> str:
        return self._k("forkq:cancels")

    @property
    def cancelled(self) -> str:
        """Jobs ended as cancelled, in total (``forkq_jobs_cancelled_total``)."""
        return self._k("forkq:cancelled")
