"""The side-by-side benchmark's tables: figures of several runs → rows → Markdown.

    python bench/report.py a.json b.json   # one table over the runs of several invocations

(each file written by ``compare.py --json`` with the same setups and process counts).

A row holds, for each setup (column group: ``pooled``, the headline, ``shared``, ``quiet`` and
``pinned``, see ``compare.SETUPS``), every run's value for each system and every run's ratio,
so the table shows medians with their min–max and the JSON record keeps the raw values. Ratios are oriented
so that > 1 favours forkq (forkq/Sidekiq for rates, Sidekiq/forkq for costs); targets are
those of DESIGN.md §8 and issue 19 in the same orientation.
"""

from __future__ import annotations

import json
import sys
from statistics import median

#: kind of figure → (how its numbers print, its unit)
FORMATS = {
    "rate": ("{:,.0f}", ""),
    "us": ("{:,.0f}", " µs"),
    "count": ("{:.2f}", ""),
    "ms": ("{:.2f}", " ms"),
    "percent": ("{:.0f}", " %"),
    "ratio": ("{:.2f}", ""),
}
#: setup → its columns' heading
HEADINGS = {"pooled": "both pooled, INFO", "shared": "Ruby on one shared connection, INFO",
            "quiet": "both pooled, no per-job log lines",
            "pinned": "both pooled, no per-job lines, each process on one CPU"}
#: figure → setup → target (ratio, > 1 favours forkq); 0.8× Sidekiq's CPU is a ratio of 1.25
TARGETS = {
    "drain": {"pooled": "≥ 1.5", "quiet": "≥ 1.2", "pinned": "≥ 1.2"},
    "cpu": {"pooled": "≥ 1.25", "quiet": "≥ 1.0", "pinned": "≥ 1.0"},
    "redis": {"pooled": "≥ 1", "quiet": "≥ 1", "pinned": "≥ 1"},
    "latency": {"pooled": "≥ 1", "quiet": "≥ 1", "pinned": "≥ 1"},
}


def spread(values: list[float], kind: str) -> str:
    """The median with its unit, then the min–max: ``266 µs (233–299)``."""
    number, unit = FORMATS[kind]
    text = number.format(median(values)) + unit
    if len(values) > 1:
        text += f" ({number.format(min(values))}–{number.format(max(values))})"
    return text


def cell(sidekiq: list[float] | None, forkq: list[float] | None, higher_is_better: bool = False,
         target: str = "–") -> dict:
    ratios = None
    if sidekiq is not None and forkq is not None:
        ratios = [f / s if higher_is_better else s / f for s, f in zip(sidekiq, forkq)]
    return {"sidekiq": sidekiq, "forkq": forkq, "ratio": ratios, "target": target}


def row(figure: str, kind: str, cells: dict[str, dict]) -> dict:
    return {"figure": figure, "kind": kind, "cells": cells}


def label(processes: int) -> str:
    return f"{processes} process{'es' if processes > 1 else ''}"


def forkq_of(setup: str) -> str:
    """The name of forkq's drain a setup's column shows (``shared`` shows ``pooled``'s)."""
    return {"quiet": "forkq-warn", "pinned": "forkq-warn-pinned"}.get(setup, "forkq-info")


def fixed_runs(setups: list[str]) -> dict[str, str]:
    """forkq's drains with ``adaptive_concurrency: false``, by name, and their log level: what
    its own CPU per job above the body alone is measured on (``ceiling_rows``)."""
    levels = {"info"} | ({"warn"} if "quiet" in setups else set())
    return {f"forkq-{level}-fixed": level for level in sorted(levels)}


def drain_rows(runs: list[dict], processes: int, setups: list[str], basic: bool) -> list[dict]:
    def values(system: str, field: str) -> list[float]:
        return [run["drain"][f"{system}-{processes}"][field] for run in runs]

    def cells(field: str, higher: bool, target: str | None) -> dict:
        return {setup: cell(values(f"sidekiq-{setup}", field), values(forkq_of(setup), field),
                            higher, TARGETS.get(target, {}).get(setup, "–"))
                for setup in setups}

    name = label(processes)
    table = [row(f"{name}: steady drain, jobs/s", "rate", cells("rate", True, "drain"))]
    if basic:
        table.append(row(f"{name}: steady drain, forkq basic fetch, jobs/s", "rate",
                         {"pooled": cell(values("sidekiq-pooled", "rate"),
                                         values("forkq-basic", "rate"), True)}))
    return table + [
        row(f"{name}: worker CPU per job (all processes)", "us", cells("cpu_us", False, "cpu")),
        row(f"{name}: Redis CPU per job", "us", cells("redis_cpu_us", False, "redis")),
        row(f"{name}: Redis round trips per job (reads)", "count",
            cells("round_trips", False, None)),
        row(f"{name}: Redis commands per job (with Lua's)", "count",
            cells("commands", False, None)),
    ]


def ceiling_rows(runs: list[dict], processes: int) -> list[dict]:
    """The body alone (Ruby's beside Sidekiq, Python's beside forkq), the minimal Python loop,
    and each system's own CPU per job above its language's body (logging on and off). forkq's
    is taken from its drains with ``adaptive_concurrency: false``: the body alone and the loop
    run every one of their ten threads, and with fewer threads taking jobs forkq also saves
    the hand-overs of the lock between them, which are the body's cost, not its own."""
    name = label(processes)

    def values(system: str, field: str = "cpu_us") -> list[float]:
        return [run["drain"][f"{system}-{processes}"][field] for run in runs]

    def own(system: str, body: str) -> list[float]:
        return [whole - alone for whole, alone in zip(values(system), values(body))]

    def beside(sidekiq: list[float] | None, forkq: list[float] | None) -> dict:
        # Each column holds its own language's figure: a ratio of the two would compare Ruby
        # with Python, not Sidekiq with forkq.
        return {"pooled": {**cell(sidekiq, forkq), "ratio": None}}

    has_quiet = "forkq-warn-%d" % processes in runs[0]["drain"]
    floor = own("python-floor", "python-body")
    table = [
        row(f"{name}: the body alone (ceiling), jobs/s", "rate",
            beside(values("ruby-body", "rate"), values("python-body", "rate"))),
        row(f"{name}: the body alone, CPU per job", "us",
            beside(values("ruby-body"), values("python-body"))),
        row(f"{name}: own CPU per job above the body alone, INFO (forkq: "
            f"adaptive_concurrency off)", "us",
            beside(own("sidekiq-pooled", "ruby-body"), own("forkq-info-fixed", "python-body"))),
    ]
    if has_quiet:
        table.append(row(f"{name}: own CPU per job above the body alone, no per-job lines "
                         f"(forkq: adaptive_concurrency off)", "us",
                         beside(own("sidekiq-quiet", "ruby-body"),
                                own("forkq-warn-fixed", "python-body"))))
    table += [
        row(f"{name}: the minimal Python job loop (floor_loop.py), CPU per job", "us",
            beside(None, values("python-floor"))),
        row(f"{name}: the minimal loop's own CPU per job above the body alone", "us",
            beside(None, floor)),
    ]
    # A ratio of the medians: one run's loop may sit within noise of its body, and a per-run
    # ratio over a difference near zero says nothing.
    forkq_own = own("forkq-warn-fixed" if has_quiet else "forkq-info-fixed", "python-body")
    ratio = median(forkq_own) / median(floor) if median(floor) > 0 else float("nan")
    table.append(row(f"{name}: forkq's own CPU per job / the minimal loop's, ratio of the "
                     f"medians ({'no per-job lines' if has_quiet else 'INFO'})", "ratio",
                     {"pooled": {**cell(None, [ratio]), "target": "forkq ≤ 1.3"}}))
    return table


def rows(runs: list[dict], setups: list[str], basic: bool = False,
         processes: list[int] = (1, 2)) -> list[dict]:
    def side(setup: str, system: str, field: str) -> list[float]:
        return [run["latency"][setup][system][field] for run in runs]

    def enqueue(system: str, field: str) -> list[float]:
        return [run["enqueue"][system][field] for run in runs]

    counts = sorted(processes, reverse=True)
    table = [entry for count in counts for entry in drain_rows(runs, count, setups, basic)]
    timed = [setup for setup in setups if setup in runs[0]["latency"]]
    for pct in ("p50", "p99"):
        table.append(row(f"idle latency, enqueue to start, {pct}", "ms", {
            setup: cell(side(setup, "sidekiq", pct), side(setup, "forkq", pct),
                        target=TARGETS["latency"].get(setup, "–")) for setup in timed}))
    table += [
        row("bulk enqueue, jobs/s", "rate",
            {"pooled": cell(enqueue("sidekiq", "bulk"), enqueue("forkq", "bulk"), True, "≥ 1.5")}),
        row("one-at-a-time enqueue, jobs/s", "rate",
            {"pooled": cell(enqueue("sidekiq", "single"), enqueue("forkq", "single"), True,
                            "≥ 1.0")}),
        row("one-at-a-time enqueue, client CPU per job", "us",
            {"pooled": cell(enqueue("sidekiq", "single_cpu_us"),
                            enqueue("forkq", "single_cpu_us"), target="≥ 1")}),
    ]
    return table + [entry for count in counts for entry in ceiling_rows(runs, count)]


def setups_of(table: list[dict]) -> list[str]:
    return [setup for setup in HEADINGS if any(setup in entry["cells"] for entry in table)]


def _text(values: list[float] | None, kind: str) -> str:
    return spread(values, kind) if values else "–"


def markdown(meta: dict, table: list[dict]) -> str:
    """The whole table: per setup, Sidekiq's and forkq's figures, the ratio and its target
    (forkq's figures of ``shared`` are those of ``pooled``, so only Sidekiq's are shown)."""
    setups = setups_of(table)
    head, rule = ["figure"], ["---"]
    for setup in setups:
        columns = ["Sidekiq", "ratio"] if setup == "shared" else ["Sidekiq", "forkq", "ratio"]
        head += [f"{HEADINGS[setup]}: {column}" for column in columns] + ["target"]
    rule += ["---"] * (len(head) - 1)
    lines = [
        f"forkq {meta['forkq']} (Python {meta['python']}) beside Sidekiq {meta['sidekiq']} (Ruby "
        f"{meta['ruby']}, redis-rb {meta['redis_rb']}), redis-server {meta['redis_server']} on "
        f"loopback TCP, {meta['cpus']} CPUs; {meta['jobs']:,} jobs a drain, 10 threads a "
        f"process, {meta['samples']} latency probes; median of {meta['runs']} run(s) (min–max); "
        f"load average {meta['load_before']:.2f} before, {meta['load_after']:.2f} after.",
        "", "| " + " | ".join(head) + " |", "| " + " | ".join(rule) + " |"]
    for entry in table:
        cells = [entry["figure"]]
        for setup in setups:
            found = entry["cells"].get(setup, {})
            cells.append(_text(found.get("sidekiq"), entry["kind"]))
            if setup != "shared":
                cells.append(_text(found.get("forkq"), entry["kind"]))
            cells += [_text(found.get("ratio"), "ratio"), found.get("target", "–")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "ratio: forkq/Sidekiq for rates, Sidekiq/forkq for costs (CPU, round trips, "
              "commands, latency), the median of the per-run ratios (min–max). The body alone: "
              "10 threads a process doing only the job's INCR, in Ruby (Sidekiq's column) and in "
              "Python (forkq's). The minimal loop: reliable fetch of 10 jobs a call, JSON "
              "decoding and the body, nothing else (bench/floor_loop.py). forkq's own CPU above "
              "the body comes from its runs with adaptive_concurrency off, every thread taking "
              "jobs as in the body alone and the loop."]
    return "\n".join(lines)


def summary(table: list[dict]) -> str:
    """The ratios alone, one column per setup: the README's headline table."""
    setups = setups_of(table)
    lines = ["| figure | " + " | ".join(HEADINGS[setup] for setup in setups) + " |",
             "| --- |" + " --- |" * len(setups)]
    for entry in table:
        ratios = [entry["cells"].get(setup, {}).get("ratio") for setup in setups]
        if any(ratios):
            lines.append(f"| {entry['figure']} | "
                         + " | ".join(_text(r, "ratio") for r in ratios) + " |")
    return "\n".join(lines)


def merged(paths: list[str]) -> tuple[dict, list[dict]]:
    """The runs of several ``--json`` records, and a header that names their loads."""
    records = [json.load(open(path)) for path in paths]
    meta = dict(records[0]["meta"])
    meta["runs"] = sum(len(record["runs"]) for record in records)
    meta["load_before"] = min(record["meta"]["load_before"] for record in records)
    meta["load_after"] = max(record["meta"]["load_after"] for record in records)
    return meta, [run for record in records for run in record["runs"]]


def main(paths: list[str]) -> None:
    meta, runs = merged(paths)
    table = rows(runs, meta["setups"], meta.get("basic_fetch", False),
                 meta.get("processes", [1, 2]))
    print(markdown(meta, table))
    print()
    print(summary(table))


if __name__ == "__main__":
    main(sys.argv[1:])
