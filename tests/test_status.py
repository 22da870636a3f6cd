"""The master's status file: what it holds, written whole, removed at stop."""

from __future__ import annotations

import json
import os

from forkq import __version__, status
from forkq import config as forkq_config
from forkq.supervisor.children import WorkerSlot
from forkq.log import logger


def slot(index: int, pid: int | None) -> WorkerSlot:
    made = WorkerSlot(index, f"host:1:{index}")
    made.pid, made.started_at, made.ready, made.restarts = pid, 100.0 + index, pid is not None, 2
    return made


def test_master_status_lists_live_and_wanted_slots_by_index():
    config = forkq_config.from_mapping({"processes": 2, "tag": "app", "concurrency": 5}, "test")
    # Slot 2 is beyond 'processes' (a HUP shrank it) and still runs; slot 3 has exited.
    slots = [slot(2, 302), slot(0, 300), slot(1, None), slot(3, None)]
    held = status.master_status(config, 42, 7.5, slots, None)
    assert [(c["slot"], c["pid"]) for c in held["children"]] == [(0, 300), (1, None), (2, 302)]
    assert held["children"][0] == {"slot": 0, "pid": 300, "started_at": 100.0, "ready": True,
                                   "restarts": 2}
    assert {k: v for k, v in held.items() if k != "children"} == {
        "master_pid": 42, "started_at": 7.5, "version": __version__, "tag": "app",
        "processes": 2, "concurrency": 5}
    periodic = {"identity": "h:42:ab", "leader": True, "enqueued": {"ping": 3}}
    assert status.master_status(config, 42, 7.5, [], periodic)["periodic"] == periodic


def test_status_file_is_written_whole_and_removed(tmp_path, caplog):
    status_file = status.StatusFile(str(tmp_path))
    assert status_file.path == os.path.join(str(tmp_path), "status.json")
    status_file.write({"master_pid": 1})
    status_file.write({"master_pid": 2})
    assert json.loads(open(status_file.path).read()) == {"master_pid": 2}
    assert os.listdir(tmp_path) == ["status.json"], "no temporary file left behind"
    status_file.remove()
    status_file.remove()
    assert not os.path.exists(status_file.path)
    missing = status.StatusFile(str(tmp_path / "gone"))
    # The handler goes on forkq's logger itself: log.setup stops it propagating to the root.
    logger.addHandler(caplog.handler)
    try:
        missing.write({"master_pid": 3})
    finally:
        logger.removeHandler(caplog.handler)
    assert "could not write" in caplog.text and missing.path in caplog.text
