"""Pidfiles: parsing what a file holds, and telling the master that wrote one from a reused pid."""

from __future__ import annotations

import os

import psutil
import pytest

from forkq.supervisor import pidfile
from forkq.errors import ForkqError
from masters import tail_forkq_log  # noqa: F401 (a fixture)


@pytest.mark.parametrize("text, problem", [
    ("-1\n", "its first line is '-1', not a number from 1 to 4194304"),
    ("0", "its first line is '0'"),
    ("", "its first line is ''"),
    ("garbage\x1b[31m\n", r"its first line is 'garbage\x1b[31m'"),
    ("99999999999999999999\n", "its first line is '99999999999999999999'"),
    ("\uff11\uff12\n", "its first line is '\uff11\uff12'"),
    ("12\nstarted=soon\n", "'started' is 'soon', not a time"),
])
def test_contents_that_are_not_a_pid_are_refused_in_one_line(text, problem):
    with pytest.raises(pidfile.PidfileError) as error:
        pidfile.parse_record("m.pid", text)
    assert problem in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("text, pid, started", [("123\n", 123, None),
                                                ("4242\nstarted=1700000000.25\n", 4242,
                                                 1700000000.25)])
def test_a_pid_with_or_without_its_start_time_is_read(text, pid, started):
    assert pidfile.parse_record("m.pid", text) == pidfile.PidRecord("m.pid", pid, started)


def test_unreadable_files_are_one_line_errors(tmp_path):
    with pytest.raises(pidfile.PidfileError, match=r"pidfile .*missing.pid not found$"):
        pidfile.read_record(str(tmp_path / "missing.pid"))
    with pytest.raises(pidfile.PidfileError, match="cannot read pidfile .*: Is a directory"):
        pidfile.read_record(str(tmp_path))
    binary = tmp_path / "binary.pid"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(pidfile.PidfileError, match="does not hold a pid"):
        pidfile.read_record(str(binary))
    assert pidfile.read_pidfile(str(binary)) is None


def test_a_reused_pid_is_not_the_master_that_wrote_the_file(tail_forkq_log):
    started = psutil.Process(tail_forkq_log.pid).create_time()
    assert pidfile.is_forkq_process(tail_forkq_log.pid)
    earlier = pidfile.PidRecord("m.pid", tail_forkq_log.pid, started - 60)
    assert not pidfile.wrote(earlier)
    assert not pidfile.wrote(pidfile.PidRecord("m.pid", tail_forkq_log.pid, None))
    assert pidfile.wrote(pidfile.PidRecord("m.pid", tail_forkq_log.pid, started))


def test_claim_writes_the_start_time_and_replaces_a_record_of_a_reused_pid(tmp_path,
                                                                            tail_forkq_log):
    path = str(tmp_path / "master.pid")
    started = psutil.Process(tail_forkq_log.pid).create_time()
    with open(path, "w") as handle:
        handle.write(pidfile.record_text(tail_forkq_log.pid, started - 60))
    pidfile.claim_pidfile(path)
    record = pidfile.read_record(path)
    assert record.pid == os.getpid()
    assert record.started == pytest.approx(psutil.Process().create_time(), abs=0.01)
    pidfile.release_pidfile(path)
    assert not os.path.exists(path)


def test_claim_refuses_a_file_naming_a_running_master(tmp_path, tail_forkq_log):
    path = str(tmp_path / "master.pid")
    started = psutil.Process(tail_forkq_log.pid).create_time()
    with open(path, "w") as handle:
        handle.write(pidfile.record_text(tail_forkq_log.pid, started))
    with pytest.raises(ForkqError, match=f"names forkq master {tail_forkq_log.pid}, which is "
                                         f"running: stop it first, or give this master another "
                                         f"data_dir"):
        pidfile.claim_pidfile(path, "data_dir")
