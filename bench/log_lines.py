"""What a log line costs a worker: forkq's own ``start``/``done`` lines and a job's own record.

Not a test: it prints figures (median of the runs, CPU microseconds a line: the thread's CPU
time for job lines, the process's for records, whose writer thread runs beside), for each format:

- *job line, processor side*: what a processor thread does per job for its two lines (make
  the job's context, hand the ``start`` and ``done`` tuples to the line buffer), divided by two;
- *job line, writer side*: the log writer thread formatting those tuples and writing them to
  ``/dev/null`` in one call;
- *job context, a job*: setting the job as the running one (``log.current_job``) and resetting
  it, which a processor thread does once a job, for the job's own lines;
- *record line*: ``logging.getLogger(name).info(...)`` from a job's own code, through the
  root logger that forkq owns, formatted with the job's context, then written by the buffer.

    python bench/log_lines.py                 # 200,000 job lines, 20,000 records, 5 runs
    python bench/log_lines.py --jobs 50000 --runs 3
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

from forkq import log

PAYLOAD = {"class": "app.jobs.HardJob", "jid": "9f3c2a1b4d5e6f708192a3b4", "args": [1]}


#: jobs whose lines the buffer gathers between two writes: about what a busy worker does in
#: ``log.FLUSH_DELAY``
CHUNK = 1000


def job_lines(log_format: str, jobs: int) -> tuple[float, float, float]:
    """Seconds a line on the processor's side and on the writer's, and a job's context."""
    buffer = log.LineBuffer(log.Output("/dev/null"), log.JOB_FORMATTERS[log_format])
    job_log = log.JobLog()
    job_log.sink, job_log.buffered = buffer.put, True  # the buffer's thread is not started
    tid, current_job = log.thread_tag(), log.current_job
    handed = written = 0.0
    for _ in range(jobs // CHUNK):
        began = time.thread_time()
        for _ in range(CHUNK):
            context = (PAYLOAD["class"], PAYLOAD.get("jid"), "default")  # as the processor does
            job_log.write(tid, context, "start")
            job_log.write(tid, context, "done", 0.00123)
        handed += time.thread_time() - began
        began = time.thread_time()
        buffer.flush()
        written += time.thread_time() - began
    buffer.output.close()
    began = time.thread_time()
    for _ in range(jobs):
        running = current_job.set(context)
        current_job.reset(running)
    lines = 2 * (jobs // CHUNK) * CHUNK
    return handed / lines, written / lines, (time.thread_time() - began) / jobs


def record_lines(log_format: str, records: int) -> float:
    """Seconds a job's own ``info`` line costs, its writing included."""
    log.setup("INFO", "/dev/null", buffered=True, log_format=log_format)
    app = logging.getLogger("app.jobs")
    running = log.current_job.set(log.job_context(PAYLOAD, "default"))
    began = time.process_time()
    for index in range(records):
        app.info("charged order %d", index)
    log.flush()
    elapsed = time.process_time() - began
    log.current_job.reset(running)
    return elapsed / records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs (two lines each)")
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if args.jobs < CHUNK or args.records < 1 or args.runs < 1:
        parser.error(f"--jobs must be at least {CHUNK} (the lines of one write), --records and "
                     f"--runs at least 1")
    for log_format in log.FORMATS:
        runs = [(*job_lines(log_format, args.jobs), record_lines(log_format, args.records))
                for _ in range(args.runs)]
        for index, what in enumerate(("job line, processor side", "job line, writer side",
                                      "job context, a job", "record line from a job")):
            median = statistics.median(run[index] for run in runs)
            print(f"{log_format:5} {what:26} {median * 1e6:7.3f} µs")


if __name__ == "__main__":
    main()
