"""Unique-job locks: one job per digest of (class, queue, args) until it starts or succeeds.

Owns the lock key ``forkq:unique:<digest>`` (a string holding the jid that took it, always with a
TTL; ``forkq:{q:<queue>}:unique:<digest>`` in the cluster layout, in the slot of the queue the
digest names) and the rules around it. The client takes the lock in the script that pushes the job
(``push.py``: a refused lock means a duplicate, and the push returns None); the
processor releases it (``release`` when the job starts, for ``unique_until: start``, or when it
succeeds or dies, for ``success``; a retry keeps the lock). The digest and the release point travel in the payload (``payload_fields``), so a
worker releases what the client took without knowing the job's options.

Failure rules: a lock always has a TTL (``unique_for`` is required), so the lock of a job whose
process was killed, or that was lost, frees itself after at most ``unique_for`` seconds (plus the
delay of a scheduled job). ``release`` deletes the lock only if it still holds this job's jid:
once a lock expired and another job took it, the first job's release leaves it alone. A job
still retrying when its lock expires can run beside a new duplicate: choose ``unique_for`` longer
than the retries you expect.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import redis as redis_py

from ..connection.scripts import Script
from ..keys import Keys
from ..values import positive_seconds

#: when the processor releases the lock: as the job starts, or once it succeeded (or died)
UNTIL = ("start", "success")
#: ``unique_until`` when a job gives ``unique_for`` only (Sidekiq Enterprise's default)
DEFAULT_UNTIL = "success"

RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
RELEASE = Script(RELEASE_SCRIPT)


def digest(class_name: str, queue: str, args: list, key: str | None = None) -> str:
    """sha256 hex of the lock's identity; a user-given ``key`` stands in for the args.

    Stable across processes and versions: JSON with sorted keys and fixed separators."""
    material: dict[str, Any] = {"class": class_name, "queue": queue}
    if key is None:
        material["args"] = args
    else:
        material["key"] = key
    # Not payload.dumps: a digest needs sorted keys, so that key order never changes it.
    try:
        text = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{class_name}: unique job arguments must be JSON ({exc})") from None
    return hashlib.sha256(text.encode()).hexdigest()


def validate_options(options: dict[str, Any], where: str) -> tuple[float, str] | None:
    """``(unique_for, unique_until)`` from job options, None for a job that is not unique."""
    unique_for = options.get("unique_for")
    until = options.get("unique_until")
    if unique_for is None:
        if until is not None:
            raise TypeError(f"{where}: option 'unique_until' needs 'unique_for' (seconds): a "
                            f"lock without a TTL would outlive a crashed process")
        return None
    unique_for = positive_seconds(unique_for, f"{where}: option 'unique_for'")
    until = DEFAULT_UNTIL if until is None else until
    if until not in UNTIL:
        raise TypeError(f"{where}: option 'unique_until' must be 'start' or 'success', "
                        f"not {until!r}")
    return unique_for, until


def lock_ttl(unique_for: float, now: float, run_at: float | None = None) -> float:
    """Seconds the lock lives: ``unique_for``, from the run time for a scheduled job."""
    return max(run_at - now, 0.0) + unique_for if run_at is not None else unique_for


def payload_fields(lock_digest: str, until: str) -> dict[str, str]:
    """Fields the client merges into the payload so the processor can release the lock."""
    return {"unique_digest": lock_digest, "unique_until": until}


def releases_at(payload: dict[str, Any], event: str) -> bool:
    """Whether the processor releases the payload's lock at ``event``.

    ``event``: ``start`` (before perform), ``success``, ``retry`` (a retry was scheduled),
    ``dead`` (retries exhausted, ``retry: false`` or 0, or poison), ``expired`` (discarded
    before it started, so a ``start`` lock too) or ``cancelled`` (``cancel.py``: it never runs
    again, whenever it was cancelled)."""
    until = payload.get("unique_until")
    if "unique_digest" not in payload or until not in UNTIL:
        return False
    if event == "start":
        return until == "start"
    if event in ("expired", "cancelled"):
        return True
    return until == "success" and event in ("success", "dead")


def lock_queue(payload: dict[str, Any]) -> str:
    """The queue the payload's digest names: where its lock lives in the cluster layout. A
    retry to another queue (``retry_queue``) keeps the first one in ``unique_queue``."""
    return str(payload.get("unique_queue") or payload.get("queue"))


def moved(payload: dict[str, Any], queue: str) -> dict[str, Any]:
    """Fields of a unique job's copy sent to ``queue``: the lock's queue is kept."""
    if "unique_digest" not in payload or queue == lock_queue(payload):
        return {"queue": queue}
    return {"queue": queue, "unique_queue": lock_queue(payload)}


def release(redis: redis_py.Redis, keys: Keys, lock_digest: str, queue: str, jid: str) -> bool:
    """Free the lock of ``queue``'s digest if ``jid`` still holds it (a lock re-taken by
    another job stays)."""
    return RELEASE(redis, [keys.unique(lock_digest, queue)], [jid]) == 1


def holder(redis: redis_py.Redis, keys: Keys, lock_digest: str, queue: str) -> str | None:
    """The jid holding the lock, if any (for inspection: a shell, tests)."""
    return redis.get(keys.unique(lock_digest, queue))


def release_at(redis: redis_py.Redis, keys: Keys, payload: dict[str, Any], event: str) -> bool:
    """The processor's call at each ``event`` (see ``releases_at``): free the payload's lock if
    it is released then and this job still holds it."""
    lock_digest = payload.get("unique_digest")
    if not isinstance(lock_digest, str) or not releases_at(payload, event):
        return False
    return release(redis, keys, lock_digest, lock_queue(payload), str(payload.get("jid")))
