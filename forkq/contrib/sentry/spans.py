"""A job's run as sentry-sdk 3.x traces it: a root span, streamed, continuing the payload's
trace.

Statuses are 3.x's two: ``error`` when the run raised, else ``ok``, a run postponed or
abandoned at shutdown included, as sentry-sdk's own integrations end the runs that their
control-flow exceptions stop. The job's ``args`` are sent unless the client's
``data_collection`` turns ``queues`` off.
"""

from __future__ import annotations

import contextlib

import sentry_sdk
from sentry_sdk.consts import OP, SPANDATA
from sentry_sdk.traces import SegmentNameSource, SpanStatus
from sentry_sdk.utils import event_from_exception

from .naming import IDENTIFIER, ORIGIN, TASK_OP


def publish_span(name: str, queue: str, jid: str):
    """The enqueue's span, under the enqueuing code's span; none outside one, where it would
    be a trace of its own."""
    if sentry_sdk.get_current_span() is None:
        return contextlib.nullcontext()
    return sentry_sdk.start_span(name=name, attributes={
        "sentry.op": OP.QUEUE_PUBLISH, "sentry.origin": ORIGIN,
        SPANDATA.MESSAGING_DESTINATION_NAME: queue, SPANDATA.MESSAGING_MESSAGE_ID: jid})


class JobSpan:
    """The run's root span, started at once; ``end`` sends it with the status set last."""

    def __init__(self, payload: dict, queue: str, trace: dict[str, str]) -> None:
        sentry_sdk.continue_trace(trace)
        attributes = {"sentry.op": TASK_OP, "sentry.origin": ORIGIN,
                      "sentry.segment.name.source": SegmentNameSource.TASK.value,
                      SPANDATA.MESSAGING_DESTINATION_NAME: queue}
        for key, value in ((SPANDATA.MESSAGING_MESSAGE_ID, payload.get("jid")),
                           (SPANDATA.MESSAGING_MESSAGE_RETRY_COUNT,
                            payload.get("retry_count"))):
            if value is not None:
                attributes[key] = value
        self.span = sentry_sdk.start_span(name=payload["class"], attributes=attributes,
                                          parent_span=None)

    def succeeded(self) -> None:
        self.span.status = SpanStatus.OK

    def failed(self) -> None:
        self.span.status = SpanStatus.ERROR

    def aborted(self) -> None:
        self.span.status = SpanStatus.OK

    def end(self) -> None:
        self.span.end()


def exception_event(exc: BaseException) -> tuple[dict, dict]:
    return event_from_exception(exc, mechanism={"type": IDENTIFIER, "handled": False})


def sends_job_args() -> bool:
    return bool(sentry_sdk.get_client().options["data_collection"]["queues"])
