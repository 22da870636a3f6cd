"""Periodic entries: config validation and tick arithmetic, with fixed clocks."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from forkq.errors import ConfigError
from forkq.periodic import (Entry, check_classes, due_ticks, entries_from_config, last_tick,
                            next_tick, periodic_fields)

UTC = timezone.utc


def at(zone: str, *parts, fold=0) -> float:
    """Epoch seconds of a wall-clock time in a zone."""
    return datetime(*parts, tzinfo=ZoneInfo(zone), fold=fold).timestamp()


def utc(*parts) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()


def local(zone: str, epoch: float) -> str:
    return datetime.fromtimestamp(epoch, ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S %Z")


def ticks_between(entry: Entry, start: float, end: float) -> list[str]:
    zone = entry.tz
    return [local(zone, tick) for tick in due_ticks(entry, start, end, 100)]


GOOD = {"name": "nightly", "class": "app.Report", "cron": "30 2 * * *"}


@pytest.mark.parametrize("raw, message", [
    ({**GOOD, "cron": "61 2 * * *"}, "bad cron expression '61 2 * * *'"),
    ({**GOOD, "cron": "* * *"}, "cron '* * *' must have 5 fields"),
    ({**GOOD, "cron": "0 0 30 2 *"}, "bad cron expression '0 0 30 2 *'"),
    ({**GOOD, "tz": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
    ({**GOOD, "tz": "../etc"}, "unknown time zone '../etc'"),
    ({**GOOD, "every": 5}, "give exactly one of 'cron' and 'every'"),
    ({"name": "n", "class": "app.Report"}, "give exactly one of 'cron' and 'every'"),
    ({"name": "n", "class": "app.Report", "every": 0}, "'every' is 0"),
    ({"name": "n", "class": "app.Report", "every": -3}, "'every' is -3"),
    ({"name": "n", "class": "app.Report", "every": float("inf")}, "'every' is inf"),
    ({"name": "n", "class": "app.Report", "every": float("nan")}, "'every' is nan"),
    ({"name": "n", "class": "app.Report", "every": "5"}, "'every' is '5'"),
    ({"name": "n", "class": "app.Report", "every": 0.1234},
     "'every' is 0.1234; give whole milliseconds (e.g. 0.123)"),
    ({"name": "n", "class": "app.Report", "every": 0.05}, "'every' is 0.05: expected"),
    ({"name": "n", "class": "app.Report", "every": True}, "'every' is True"),
    ({"name": "n", "class": "app.Report", "every": 5, "tz": "Europe/Berlin"},
     "'tz' applies to 'cron' only"),
    ({**GOOD, "args": "x"}, "'args' must be a list, got 'x'"),
    ({**GOOD, "args": [float("nan")]}, "'args': args[0] is nan, which JSON cannot carry"),
    ({**GOOD, "args": [[1, float("inf")]]}, "'args': args[0][1] is inf"),
    ({**GOOD, "sched": "x"}, "unknown key 'sched'"),
    ({**GOOD, "missed": "all"}, "'missed' is 'all'; use 'skip' or 'once'"),
    ({"class": "app.Report", "every": 5}, "'name' is required"),
    ({"name": "n", "every": 5}, "'class' is required"),
    ({**GOOD, "name": ""}, "name '' must be a non-empty string"),
    ({**GOOD, "queue": 3}, "'queue' must be a queue name, got 3"),
])
def test_a_bad_entry_is_a_one_line_error_naming_source_entry_and_value(raw, message):
    with pytest.raises(ConfigError) as caught:
        entries_from_config([raw], "forkq.yml")
    text = str(caught.value)
    assert message in text
    assert text.startswith("forkq.yml: periodic")
    assert "\n" not in text


@pytest.mark.parametrize("raw, message", [
    ({"name": "x"}, "'periodic' must be a list of entries, got dict"),
    (["x"], "periodic[0] must be a mapping, got str"),
    ([GOOD, GOOD], "periodic entry name 'nightly' is used twice"),
])
def test_a_bad_list_is_an_error(raw, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        entries_from_config(raw, "forkq.yml")


def test_good_entries_parse_with_defaults():
    entries = entries_from_config([
        GOOD,
        {"name": "ping", "class": "app.Ping", "every": 1.5, "args": [1, "a"], "queue": "low",
         "missed": "skip"},
        {"name": "berlin", "class": "app.Ping", "cron": "15 0 3 * * mon", "tz": "Europe/Berlin"},
    ], "forkq.yml")
    nightly, ping, berlin = entries
    assert (nightly.queue, nightly.args, nightly.tz, nightly.missed) == (None, (), "UTC",
                                                                        "once")
    assert (ping.every, ping.args, ping.queue, ping.missed) == (1.5, (1, "a"), "low", "skip")
    assert berlin.wall_clock and not ping.wall_clock
    assert entries_from_config(None, "forkq.yml") == []


def test_check_classes_names_the_unknown_class():
    entries = entries_from_config([GOOD], "forkq.yml")
    check_classes(entries, {"app.Report": object}.get)
    with pytest.raises(ConfigError, match="periodic entry 'nightly': unknown job class "
                                          "'app.Report'"):
        check_classes(entries, {}.__getitem__)


@pytest.mark.parametrize("every, after, expected", [
    (1, 100.0, 101.0),
    (1, 100.5, 101.0),
    (60, 119.9, 120.0),
    (60, 120.0, 180.0),
    (0.5, 10.2, 10.5),
    (0.1, 0.25, 0.3),
    (0.1, 0.3, 0.4),
])
def test_every_ticks_are_aligned_to_the_epoch(every, after, expected):
    entry = Entry("e", "app.Job", every=every)
    assert next_tick(entry, after) == expected
    assert last_tick(entry, expected) == expected


@pytest.mark.parametrize("cron, tz, after, expected", [
    ("*/5 * * * *", "UTC", utc(2026, 1, 1, 0, 2), utc(2026, 1, 1, 0, 5)),
    ("30 2 * * *", "UTC", utc(2026, 1, 1, 2, 30), utc(2026, 1, 2, 2, 30)),
    ("*/10 * * * * *", "UTC", utc(2026, 1, 1, 0, 0, 5), utc(2026, 1, 1, 0, 0, 10)),
    ("0 9 * * mon", "Europe/Berlin", utc(2026, 1, 1), at("Europe/Berlin", 2026, 1, 5, 9)),
    ("0 9 * * *", "America/New_York", utc(2026, 7, 1, 12), at("America/New_York", 2026, 7, 1, 9)),
    ("0 9 * * *", "America/New_York", utc(2026, 7, 1, 14), at("America/New_York", 2026, 7, 2, 9)),
])
def test_cron_ticks(cron, tz, after, expected):
    entry = Entry("c", "app.Job", cron=cron, tz=tz)
    assert next_tick(entry, after) == expected
    assert last_tick(entry, expected + 0.5) == expected


# Spring forward: New York skips 02:00-03:00 on 2026-03-08, Berlin 02:00-03:00 on 2026-03-29.
# Fall back: New York repeats 01:00-02:00 on 2026-11-01, Berlin 02:00-03:00 on 2026-10-25.
@pytest.mark.parametrize("cron, tz, start, end, expected", [
    ("30 2 * * *", "America/New_York", utc(2026, 3, 7), utc(2026, 3, 10),
     ["2026-03-07 02:30:00 EST", "2026-03-08 03:00:00 EDT", "2026-03-09 02:30:00 EDT"]),
    ("0 30 2 * * *", "America/New_York", utc(2026, 3, 7), utc(2026, 3, 10),
     ["2026-03-07 02:30:00 EST", "2026-03-08 03:00:00 EDT", "2026-03-09 02:30:00 EDT"]),
    ("15,45 2 * * *", "Europe/Berlin", utc(2026, 3, 28, 12), utc(2026, 3, 29, 12),
     ["2026-03-29 03:00:00 CEST"]),
    ("30 1 * * *", "America/New_York", utc(2026, 10, 31, 12), utc(2026, 11, 2, 12),
     ["2026-11-01 01:30:00 EDT", "2026-11-02 01:30:00 EST"]),
    ("0 30 1 * * *", "America/New_York", utc(2026, 10, 31, 12), utc(2026, 11, 2, 12),
     ["2026-11-01 01:30:00 EDT", "2026-11-02 01:30:00 EST"]),
    ("30 2 * * *", "Europe/Berlin", utc(2026, 10, 24, 12), utc(2026, 10, 26, 12),
     ["2026-10-25 02:30:00 CEST", "2026-10-26 02:30:00 CET"]),
    ("*/30 * * * *", "America/New_York", utc(2026, 11, 1, 4, 50), utc(2026, 11, 1, 7, 10),
     ["2026-11-01 01:00:00 EDT", "2026-11-01 01:30:00 EDT", "2026-11-01 01:00:00 EST",
      "2026-11-01 01:30:00 EST", "2026-11-01 02:00:00 EST"]),
])
def test_dst_a_fixed_time_runs_once_a_day(cron, tz, start, end, expected):
    assert ticks_between(Entry("d", "app.Job", cron=cron, tz=tz), start, end) == expected


def test_a_tick_inside_the_repeated_hour_is_not_run_again_at_its_second_occurrence():
    entry = Entry("d", "app.Job", cron="30 1 * * *", tz="America/New_York")
    second_pass = at("America/New_York", 2026, 11, 1, 1, 15, fold=1)
    assert local("America/New_York", next_tick(entry, second_pass)) == "2026-11-02 01:30:00 EST"


def test_last_tick_across_the_gap_matches_the_forward_tick():
    entry = Entry("d", "app.Job", cron="30 2 * * *", tz="America/New_York")
    gap_tick = next_tick(entry, utc(2026, 3, 7, 12))
    assert last_tick(entry, gap_tick + 3600) == gap_tick


@pytest.mark.parametrize("cron, bound, expected", [
    ("30 1 * * *", utc(2026, 11, 1, 6), utc(2026, 11, 1, 5, 30)),  # 01:00 EST, second pass
    ("30 1 * * *", utc(2026, 11, 1, 5, 45), utc(2026, 11, 1, 5, 30)),
    ("30 1 * * *", utc(2026, 11, 1, 5, 29), utc(2026, 10, 31, 5, 30)),
    ("30 2 * * *", utc(2026, 3, 8, 7, 30), utc(2026, 3, 8, 7)),  # the skipped 02:30 ran at 03:00
])
def test_last_tick_in_new_york_around_dst(cron, bound, expected):
    assert last_tick(Entry("d", "app.Job", cron=cron, tz="America/New_York"), bound) == expected


#: an epoch of today's size: at 1.8e9 a float keeps about 7 decimals, not the 9 a rounding of
#: ``tick / every`` to 9 decimals assumes
NOW = 1_800_000_000.0


@pytest.mark.parametrize("every, expected", [(1.1, 91), (0.1, 1000), (0.7, 143), (2.5, 40)])
def test_fractional_every_keeps_ticking_at_the_right_count_over_a_span(every, expected):
    """Each tick found is strictly after the one before: the cursor always moves on."""
    entry = Entry("e", "app.Job", every=every)
    ticks, cursor = [], NOW
    while (found := due_ticks(entry, cursor, NOW + 100, 7)):
        assert found == sorted(set(found)) and found[0] > cursor
        ticks += found
        cursor = found[-1]
    assert len(ticks) == expected
    assert ticks[-1] == last_tick(entry, NOW + 100)
    for tick in ticks:
        assert next_tick(entry, tick) > tick and last_tick(entry, tick) == tick


def test_ticks_are_whole_milliseconds_that_survive_their_text():
    entry = Entry("e", "app.Job", every=1.1)
    for tick in due_ticks(entry, NOW, NOW + 30, 100):
        assert tick == round(tick, 3) == float(f"{tick:.3f}")
        assert next_tick(entry, float(f"{tick - 0.000001:.6f}")) == tick
        assert last_tick(entry, float(f"{tick - 0.000001:.6f}")) == round(tick - 1.1, 3)


def test_args_from_code_must_be_json():
    with pytest.raises(ConfigError, match="periodic entry 'e': 'args': args\\[0\\] is a "
                                          "builtins.object, which is not JSON-native"):
        Entry("e", "app.Job", args=(object(),), every=1)


def test_yaml_nan_in_args_stops_start_up_naming_file_entry_and_value(tmp_path):
    """``.nan`` passes ``json.dumps``; the client refuses it at every enqueue, so refuse it
    once, at start."""
    import yaml

    raw = yaml.safe_load("- {name: n, class: app.Job, every: 5, args: [1, .nan]}")
    with pytest.raises(ConfigError) as caught:
        entries_from_config(raw, "forkq.yml")
    assert str(caught.value).startswith("forkq.yml: periodic entry 'n': 'args': args[1] is nan")


def test_due_ticks_are_bounded_and_ordered():
    entry = Entry("e", "app.Job", every=1)
    assert due_ticks(entry, 10.0, 14.0, 100) == [11.0, 12.0, 13.0, 14.0]
    assert due_ticks(entry, 10.0, 1000.0, 3) == [11.0, 12.0, 13.0]


def test_the_payload_carries_the_tick():
    assert periodic_fields(Entry("e", "app.Job", every=1), 12.0) == {
        "periodic": {"name": "e", "tick": 12.0}}


def test_entries_from_code_name_their_line_and_clash_with_the_file(monkeypatch):
    import forkq
    from forkq import periodic

    monkeypatch.setattr(periodic, "_registered", [])
    entry = forkq.register_periodic("ping", "app.Ping", every=5, args=[1])
    line = sys._getframe().f_lineno - 1
    assert entry.source == f"{__file__}:{line}" and periodic.registered() == [entry]
    with pytest.raises(ConfigError, match=r"test_periodic.py:\d+: periodic entry 'bad': 'every' "
                                          r"is 0.05: expected a number of seconds >= 0.1"):
        forkq.register_periodic("bad", "app.Ping", every=0.05)
    from_file = entries_from_config([{"name": "ping", "class": "app.P", "every": 1}], "f.yml")
    with pytest.raises(ConfigError, match=r"test_periodic.py:\d+: periodic entry name 'ping' is "
                                          r"already used by f.yml"):
        periodic.merge(from_file, periodic.registered())
