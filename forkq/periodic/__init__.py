"""Periodic entries: what runs when, as pure functions of the time they are given.

Owns the ``periodic:`` list of ``forkq.yml`` (parsing and validation into frozen ``Entry``
objects), the tick arithmetic (``next_tick``, ``due_ticks``) and the fields a periodic job's
payload carries. Nothing here touches Redis or reads the clock: the leader
(``forkq.periodic.leader``) passes the time in, so every rule is tested with fixed clocks.

Ticks are UTC epoch seconds. An ``every: N`` entry ticks at the multiples of N seconds since the
epoch, counted in whole milliseconds (``every`` must be a whole number of them, 0.1 at least):
integer arithmetic, because at today's epoch a float keeps about 7 decimals, and a quotient
such as ``tick / 1.1`` rounded in floats can land just below a whole number and give back the
tick it started from, which stalled a fractional entry for good. A ``cron`` entry ticks at
the times its expression names in its ``tz`` (UTC by default, so that hosts in different zones
compute the same ticks): two hosts asking for the next tick after the same moment get the
same number, which is what lets the per-tick claim key deduplicate.

Daylight saving, as Vixie/Debian cron does it: an expression whose minute and hour fields are
both fixed (``30 2 * * *``, or ``0 30 2 * * *`` with seconds) follows the wall clock; a time that
falls in the skipped hour runs once, at the first wall-clock minute after the gap (03:00 for a
02:30 job when 02:00-03:00 is skipped, with the expression's seconds), and a time in the repeated
hour runs once, at its first occurrence. An expression with a wildcard or step in the minute or
hour field (``*/15 * * * *``) follows elapsed time: it runs at each real quarter hour, twice in a
repeated hour's wall-clock range and not at all in a skipped one.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from ..errors import ConfigError
from ..payload import check_args
from ..values import YEAR, is_positive_seconds, seconds

UTC = timezone.utc

#: what happens to ticks that passed while no leader ran (see ``Entry.missed``)
MISSED_POLICIES = ("skip", "once")
#: default policy: a restart or a leader change of a few minutes must not drop a daily job;
#: running the latest missed tick once, late, never floods the queue after a long outage
DEFAULT_MISSED = "once"
#: the keys an entry of ``periodic:`` may have
ENTRY_KEYS = frozenset({"name", "class", "args", "queue", "cron", "tz", "every", "missed"})


@dataclass(frozen=True)
class Entry:
    """One periodic job: enqueue ``class_name(*args)`` on ``queue`` at every tick (``queue``
    None: the job's own ``queue`` option).

    Exactly one of ``cron`` (5 fields, or 6 with seconds first; read in ``tz``) and ``every``
    (seconds, > 0) is set. ``missed`` says what a leader does with ticks that passed while no
    leader ran: ``skip`` drops them; ``once`` enqueues the latest of them once, late."""

    name: str
    class_name: str
    args: tuple = ()
    queue: str | None = None
    cron: str | None = None
    tz: str = "UTC"
    every: float | None = None
    missed: str = DEFAULT_MISSED
    source: str = "code"
    zone: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        validate(self)
        object.__setattr__(self, "zone", _zone(self.tz))

    @property
    def wall_clock(self) -> bool:
        """True when the expression names fixed times of day (Debian cron's DST rule)."""
        if self.cron is None:
            return False
        minute, hour = self.cron.split()[-5:-3]
        return not minute.startswith("*") and not hour.startswith("*")


def validate(entry: Entry) -> None:
    """Raise ``ConfigError`` naming the source, the entry and the bad value."""
    where = f"{entry.source}: periodic entry {entry.name!r}"
    if not isinstance(entry.name, str) or not entry.name.strip():
        raise ConfigError(f"{entry.source}: periodic entry name {entry.name!r} must be a "
                          f"non-empty string")
    if not isinstance(entry.class_name, str) or not entry.class_name:
        raise ConfigError(f"{where}: 'class' must be a job's wire name, got "
                          f"{entry.class_name!r}")
    if entry.queue is not None and (not isinstance(entry.queue, str) or not entry.queue):
        raise ConfigError(f"{where}: 'queue' must be a queue name, got {entry.queue!r}")
    if entry.missed not in MISSED_POLICIES:
        raise ConfigError(f"{where}: 'missed' is {entry.missed!r}; use 'skip' or 'once'")
    _check_args(entry.args, where)
    if (entry.cron is None) == (entry.every is None):
        raise ConfigError(f"{where}: give exactly one of 'cron' and 'every'")
    if entry.every is not None:
        _check_every(entry.every, where)
        if entry.tz != "UTC":
            raise ConfigError(f"{where}: 'tz' applies to 'cron' only, not to 'every'")
    else:
        _check_cron(entry.cron, entry.tz, where)


def _check_args(args: Any, where: str) -> None:
    """The client's rule for job arguments, at start: what it would refuse at every tick
    (YAML's ``.nan``, a date) stops start-up instead."""
    if not isinstance(args, (list, tuple)):
        raise ConfigError(f"{where}: 'args' must be a list, got {args!r}")
    try:
        check_args(list(args), f"{where}: 'args'")
    except TypeError as exc:
        raise ConfigError(str(exc)) from None


#: a periodic entry's ``every``: below a tenth of a second it would keep the master's loop
#: busy enqueueing
_every_bounds = seconds(YEAR, 0.1)


def _check_every(every: Any, where: str) -> None:
    if not is_positive_seconds(every):
        raise ConfigError(f"{where}: 'every' is {every!r}; give a positive number of seconds")
    try:
        _every_bounds(every)
    except ValueError as exc:
        raise ConfigError(f"{where}: 'every' is {every!r}: {exc}") from None
    if not math.isclose(every * 1000, _every_ms(every), rel_tol=0, abs_tol=1e-6):
        raise ConfigError(f"{where}: 'every' is {every!r}; give whole milliseconds "
                          f"(e.g. {_every_ms(every) / 1000:g})")


def _check_cron(cron: Any, tz: Any, where: str) -> None:
    if not isinstance(tz, str):
        raise ConfigError(f"{where}: 'tz' is {tz!r}; give an IANA zone name like "
                          f"'Europe/Berlin'")
    try:
        zone = _zone(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{where}: unknown time zone {tz!r}; give an IANA zone name like "
                          f"'Europe/Berlin'") from None
    if not isinstance(cron, str) or len(cron.split()) not in (5, 6):
        raise ConfigError(f"{where}: cron {cron!r} must have 5 fields, or 6 with seconds "
                          f"first")
    try:
        next(CronSim(cron, datetime.now(zone)))
    except CronSimError as exc:
        raise ConfigError(f"{where}: bad cron expression {cron!r}: {exc}") from None
    except StopIteration:
        raise ConfigError(f"{where}: cron {cron!r} never fires") from None


def _zone(tz: str):
    """The zone an IANA name names; UTC needs no tz database."""
    return ZoneInfo(tz) if tz != "UTC" else UTC


def entries_from_config(raw: Any, source: str) -> list[Entry]:
    """Entries from the ``periodic:`` value of a config file (a list of mappings)."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError(f"{source}: 'periodic' must be a list of entries, got "
                          f"{type(raw).__name__}")
    entries = [_entry_from_mapping(item, index, source) for index, item in enumerate(raw)]
    seen: set[str] = set()
    for entry in entries:
        if entry.name in seen:
            raise ConfigError(f"{source}: periodic entry name {entry.name!r} is used twice")
        seen.add(entry.name)
    return entries


def _entry_from_mapping(item: Any, index: int, source: str) -> Entry:
    if not isinstance(item, dict):
        raise ConfigError(f"{source}: periodic[{index}] must be a mapping, got "
                          f"{type(item).__name__}")
    name = item.get("name", f"periodic[{index}]")
    unknown = sorted(set(map(str, item)) - ENTRY_KEYS)
    if unknown:
        raise ConfigError(f"{source}: periodic entry {name!r}: unknown key {unknown[0]!r}; "
                          f"known keys: {', '.join(sorted(ENTRY_KEYS))}")
    for required in ("name", "class"):
        if required not in item:
            raise ConfigError(f"{source}: periodic entry {name!r}: '{required}' is required")
    args = item.get("args", [])
    if not isinstance(args, list):
        raise ConfigError(f"{source}: periodic entry {name!r}: 'args' must be a list, got "
                          f"{args!r}")
    return Entry(name=name, class_name=item["class"], args=tuple(args),
                 queue=item.get("queue"), cron=item.get("cron"),
                 tz=item.get("tz", "UTC"), every=item.get("every"),
                 missed=item.get("missed", DEFAULT_MISSED), source=source)


#: entries declared from code in this process (``register``), in order
_registered: list[Entry] = []


def register(name: str, job: Any, *, cron: str | None = None, every: float | None = None,
             args: list | tuple = (), queue: str | None = None, tz: str = "UTC",
             missed: str = DEFAULT_MISSED) -> Entry:
    """Declare a periodic entry from code (``forkq.register_periodic``), at import of a module
    named in ``require:``; the master schedules it beside the config file's entries.

    ``job`` is a job class, an ``@forkq.job`` function or a wire name. Bad values raise
    ``ConfigError`` at the call; a name used twice fails at start."""
    wire_name = job if isinstance(job, str) else job.wire_name()
    caller = sys._getframe(1)
    while caller.f_back is not None and caller.f_globals.get("__name__", "").startswith("forkq"):
        caller = caller.f_back
    source = f"{caller.f_code.co_filename}:{caller.f_lineno}"
    entry = Entry(name=name, class_name=wire_name, args=tuple(args), queue=queue, cron=cron,
                  tz=tz, every=every, missed=missed, source=source)
    _registered.append(entry)
    return entry


def registered() -> list[Entry]:
    """Entries declared from code in this process, in the order of their declaration."""
    return list(_registered)


def merge(from_file: tuple | list, from_code: list[Entry]) -> list[Entry]:
    """The file's entries then the code's; one name used twice is an error naming both."""
    seen: dict[str, Entry] = {}
    for entry in [*from_file, *from_code]:
        first = seen.setdefault(entry.name, entry)
        if first is not entry:
            raise ConfigError(f"{entry.source}: periodic entry name {entry.name!r} is already "
                              f"used by {first.source}")
    return list(seen.values())


def check_classes(entries: list[Entry], resolve: Callable[[str], Any]) -> None:
    """Fail on an entry whose class the loaded app does not know.

    ``resolve(wire_name)`` returns the job class, or None or raises when there is none."""
    for entry in entries:
        try:
            known = resolve(entry.class_name) is not None
        except Exception:
            known = False
        if not known:
            raise ConfigError(f"{entry.source}: periodic entry {entry.name!r}: unknown job "
                              f"class {entry.class_name!r}; name a job registered by the "
                              f"modules in 'require'")


def next_tick(entry: Entry, after: float) -> float | None:
    """The entry's first tick strictly after ``after`` (epoch seconds); None if it never fires."""
    if entry.every is not None:
        step = _every_ms(entry.every)
        return (_ms(after) // step + 1) * step / 1000
    try:
        if entry.wall_clock:
            return _next_wall_clock_tick(entry, after)
        local = datetime.fromtimestamp(after, entry.zone)
        return next(CronSim(entry.cron, local)).timestamp()
    except StopIteration:
        return None


def _every_ms(every: float) -> int:
    """An ``every`` in whole milliseconds (validation refuses one that is not)."""
    return round(every * 1000)


def _ms(at: float) -> int:
    """Epoch seconds to whole milliseconds, rounded down with half a microsecond of slack.

    A float near today's epoch is exact to about 0.24 µs: the slack maps a tick given back as
    a float, or read back from its text, to its own millisecond, never the one before, while
    a time one microsecond (the cursor text's precision) before a tick stays before it."""
    return math.floor(at * 1000 + 0.0005)


def _next_wall_clock_tick(entry: Entry, after: float) -> float:
    """Iterate wall-clock times (naive) and map each to the instant it happens."""
    naive = datetime.fromtimestamp(after, entry.zone).replace(tzinfo=None)
    for wall in CronSim(entry.cron, naive):
        at = _wall_to_epoch(wall, entry.zone)
        if at > after:
            return at
    raise StopIteration


def _wall_to_epoch(wall: datetime, zone) -> float:
    """A wall-clock time's instant: the first one if repeated, the end of the gap if skipped."""
    while _is_skipped(wall, zone):
        wall += timedelta(minutes=1)
    return wall.replace(tzinfo=zone, fold=0).timestamp()


def _is_skipped(wall: datetime, zone) -> bool:
    aware = wall.replace(tzinfo=zone, fold=0)
    return aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != wall


def due_ticks(entry: Entry, cursor: float, now: float, limit: int) -> list[float]:
    """Ticks in ``(cursor, now]``, oldest first, at most ``limit`` of them."""
    ticks: list[float] = []
    tick = next_tick(entry, cursor)
    while tick is not None and tick <= now and len(ticks) < limit:
        ticks.append(tick)
        tick = next_tick(entry, tick)
    return ticks


def last_tick(entry: Entry, at_or_before: float) -> float | None:
    """The entry's latest tick at or before ``at_or_before``; None if there is none."""
    if entry.every is not None:
        step = _every_ms(entry.every)
        return _ms(at_or_before) // step * step / 1000
    start = datetime.fromtimestamp(math.floor(at_or_before) + 1, entry.zone)
    try:
        if not entry.wall_clock:
            return next(CronSim(entry.cron, start, reverse=True)).timestamp()
        # wall-clock times map to instants in order, but a naive start loses the fold of a
        # repeated hour: start two hours of wall clock later and keep the first one in range
        later = start.replace(tzinfo=None) + timedelta(hours=2)
        for wall in CronSim(entry.cron, later, reverse=True):
            at = _wall_to_epoch(wall, entry.zone)
            if at <= at_or_before:
                return at
    except StopIteration:
        pass
    return None


def periodic_fields(entry: Entry, tick: float) -> dict[str, Any]:
    """Fields to merge into the payload of the job enqueued for ``tick``."""
    return {"periodic": {"name": entry.name, "tick": tick}}
