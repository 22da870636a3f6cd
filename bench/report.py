"""The side-by-side benchmark's table: figures of several runs → rows → Markdown.

A row holds every run's value for each system and every run's ratio, so the table shows
medians with their min–max and the JSON record keeps the raw values. Ratios are oriented so
that > 1 favours forkq (forkq/Sidekiq for rates, Sidekiq/forkq for costs); targets are those
of DESIGN.md §8 in the same orientation.
"""

from __future__ import annotations

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


def spread(values: list[float], kind: str) -> str:
    """The median with its unit, then the min–max: ``266 µs (233–299)``."""
    number, unit = FORMATS[kind]
    text = number.format(median(values)) + unit
    if len(values) > 1:
        text += f" ({number.format(min(values))}–{number.format(max(values))})"
    return text


def row(figure: str, sidekiq: list[float] | None, forkq: list[float], kind: str,
        higher_is_better: bool = False, target: str = "–") -> dict:
    ratios = None
    if sidekiq is not None:
        ratios = [f / s if higher_is_better else s / f for s, f in zip(sidekiq, forkq)]
    return {"figure": figure, "kind": kind, "sidekiq": sidekiq, "forkq": forkq,
            "ratio": ratios, "target": target}


def drain_rows(runs: list[dict], processes: int, targets: dict) -> list[dict]:
    label = f"{processes} process{'es' if processes > 1 else ''}"

    def values(system: str, field: str) -> list[float]:
        return [run["drain"][f"{system}-{processes}"][field] for run in runs]

    return [
        row(f"{label}: steady drain, jobs/s", values("sidekiq", "rate"), values("forkq", "rate"),
            "rate", True, targets["drain"]),
        row(f"{label}: steady drain, forkq basic fetch, jobs/s", values("sidekiq", "rate"),
            values("forkq-basic", "rate"), "rate", True),
        row(f"{label}: worker CPU per job (all processes)", values("sidekiq", "cpu_us"),
            values("forkq", "cpu_us"), "us", target="≥ 1"),
        row(f"{label}: Redis CPU per job", values("sidekiq", "redis_cpu_us"),
            values("forkq", "redis_cpu_us"), "us", target="≥ 1"),
        row(f"{label}: Redis round trips per job (reads)", values("sidekiq", "round_trips"),
            values("forkq", "round_trips"), "count"),
        row(f"{label}: Redis commands per job (with Lua's)", values("sidekiq", "commands"),
            values("forkq", "commands"), "count"),
    ]


def ceiling_rows(runs: list[dict], processes: int) -> list[dict]:
    """The body alone (Ruby's beside Sidekiq, Python's beside forkq), and each system's own
    CPU per job as a share of its language's body."""
    label = f"{processes} process{'es' if processes > 1 else ''}"

    def values(system: str, field: str) -> list[float]:
        return [run["drain"][f"{system}-{processes}"][field] for run in runs]

    def own_share(system: str, body: str) -> list[float]:
        return [(whole - alone) / alone * 100
                for whole, alone in zip(values(system, "cpu_us"), values(body, "cpu_us"))]

    # Each column holds its own language's figure: a ratio of the two would compare Ruby with
    # Python, not Sidekiq with forkq.
    ceiling = [
        row(f"{label}: the body alone (ceiling), jobs/s", values("ruby-body", "rate"),
            values("python-body", "rate"), "rate"),
        row(f"{label}: the body alone, CPU per job", values("ruby-body", "cpu_us"),
            values("python-body", "cpu_us"), "us"),
        row(f"{label}: own CPU per job, (system − its body alone) / body alone",
            own_share("sidekiq", "ruby-body"), own_share("forkq", "python-body"), "percent",
            target="forkq ≤ 25 %"),
        row(f"{label}: the minimal Python job loop (floor_loop.py), CPU per job", None,
            values("python-floor", "cpu_us"), "us"),
        row(f"{label}: the minimal loop's own CPU per job, (loop − body alone) / body alone",
            None, own_share("python-floor", "python-body"), "percent"),
    ]
    for entry in ceiling:
        entry["ratio"] = None
    return ceiling


def rows(runs: list[dict]) -> list[dict]:
    def side(section: str, system: str, field: str) -> list[float]:
        return [run[section][system][field] for run in runs]

    table = drain_rows(runs, 2, {"drain": "≥ 1.2"}) + drain_rows(runs, 1, {"drain": "≥ 1.0"})
    for pct in ("p50", "p99"):
        table.append(row(f"idle latency, enqueue to start, {pct}", side("latency", "sidekiq", pct),
                         side("latency", "forkq", pct), "ms", target="≥ 1"))
    table.append(row("bulk enqueue, jobs/s", side("enqueue", "sidekiq", "bulk"),
                     side("enqueue", "forkq", "bulk"), "rate", True, "≥ 1.5"))
    table.append(row("one-at-a-time enqueue, jobs/s", side("enqueue", "sidekiq", "single"),
                     side("enqueue", "forkq", "single"), "rate", True, "≥ 1.0"))
    table.append(row("one-at-a-time enqueue, client CPU per job",
                     side("enqueue", "sidekiq", "single_cpu_us"),
                     side("enqueue", "forkq", "single_cpu_us"), "us", target="≥ 1"))
    return table + ceiling_rows(runs, 2) + ceiling_rows(runs, 1)


def markdown(meta: dict, table: list[dict]) -> str:
    lines = [
        f"forkq {meta['forkq']} (Python {meta['python']}) beside Sidekiq {meta['sidekiq']} (Ruby "
        f"{meta['ruby']}, redis-rb {meta['redis_rb']}, the body's client: {meta['ruby_client']}), "
        f"redis-server {meta['redis_server']} on loopback TCP, {meta['cpus']} CPUs; "
        f"{meta['jobs']:,} jobs a drain, 10 threads a process, {meta['samples']} latency probes; "
        f"median of {meta['runs']} run(s) (min–max); load average {meta['load_before']:.2f} "
        f"before, {meta['load_after']:.2f} after.",
        "",
        "| figure | Sidekiq | forkq | ratio (> 1: forkq better) | target |",
        "| --- | --- | --- | --- | --- |",
    ]
    for entry in table:
        sidekiq = spread(entry["sidekiq"], entry["kind"]) if entry["sidekiq"] else "–"
        ratio = spread(entry["ratio"], "ratio") if entry["ratio"] else "–"
        lines.append(f"| {entry['figure']} | {sidekiq} | {spread(entry['forkq'], entry['kind'])} "
                     f"| {ratio} | {entry['target']} |")
    lines += ["", "ratio: forkq/Sidekiq for rates, Sidekiq/forkq for costs (CPU, round trips, "
              "commands, latency), the median of the per-run ratios. The body alone: 10 threads "
              "a process doing only the job's INCR, in Ruby (Sidekiq's column) and in Python "
              "(forkq's). The minimal loop: reliable fetch of 10 jobs a call, JSON decoding and "
              "the body, nothing else (bench/floor_loop.py)."]
    return "\n".join(lines)
