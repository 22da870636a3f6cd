"""The master's status file: what it holds (``status.py``), written whole and removed at stop
(``supervisor/files.py``)."""

from __future__ import annotations

import json
import os
import shutil

from forkq import __version__, status
from forkq import config as forkq_config
from forkq.supervisor.children import WorkerSlot
from forkq.supervisor.files import MasterFiles
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
    files = MasterFiles(str(tmp_path), None)
    files.claim()
    assert files.status_path == os.path.join(str(tmp_path), "status.json")
    files.write_status({"master_pid": 1})
    files.write_status({"master_pid": 2})
    assert json.loads(open(files.status_path).read()) == {"master_pid": 2}
    assert sorted(os.listdir(tmp_path)) == ["master.pid", "status.json"], \
        "no temporary file left behind"
    files.release()
    files.release()
    assert os.listdir(tmp_path) == []
    missing = MasterFiles(str(tmp_path / "gone"), None)
    missing.claim()
    shutil.rmtree(tmp_path / "gone")
    # The handler goes on forkq's logger itself: log.setup stops it propagating to the root.
    logger.addHandler(caplog.handler)
    try:
        missing.write_status({"master_pid": 3})
    finally:
        logger.removeHandler(caplog.handler)
    assert "could not write" in caplog.text and missing.status_path in caplog.text


def test_a_master_refused_at_start_leaves_the_running_masters_status_file(tmp_path):
    with open(tmp_path / "status.json", "w") as handle:
        handle.write('{"master_pid": 1}')
    MasterFiles(str(tmp_path), None).release()
    assert os.listdir(tmp_path) == ["status.json"]
