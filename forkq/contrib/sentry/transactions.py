"""A job's run as sentry-sdk 2.x traces it: a transaction, continuing the payload's trace.

Statuses: ``ok``, ``internal_error`` (it raised), ``aborted`` (postponed or abandoned at
shutdown). The job's ``args`` are sent where personal data is (``send_default_pii``).
"""

from __future__ import annotations

import sentry_sdk
from sentry_sdk.api import continue_trace
from sentry_sdk.consts import OP, SPANDATA, SPANSTATUS
from sentry_sdk.scope import should_send_default_pii
from sentry_sdk.tracing import TransactionSource
from sentry_sdk.utils import event_from_exception

from .naming import IDENTIFIER, ORIGIN, TASK_OP


def publish_span(name: str, queue: str, jid: str):
    """The enqueue's span, in the enqueuing code's transaction (none outside one)."""
    span = sentry_sdk.start_span(op=OP.QUEUE_PUBLISH, name=name, origin=ORIGIN)
    span.set_data(SPANDATA.MESSAGING_DESTINATION_NAME, queue)
    span.set_data(SPANDATA.MESSAGING_MESSAGE_ID, jid)
    return span


class JobSpan:
    """The run's transaction, started at once; ``end`` sends it with the status set last."""

    def __init__(self, payload: dict, queue: str, trace: dict[str, str]) -> None:
        transaction = continue_trace(
            trace, op=TASK_OP, name=payload["class"],
            source=TransactionSource.TASK, origin=ORIGIN)
        self.transaction = sentry_sdk.start_transaction(transaction)
        self.transaction.__enter__()
        for key, value in ((SPANDATA.MESSAGING_DESTINATION_NAME, queue),
                           (SPANDATA.MESSAGING_MESSAGE_ID, payload.get("jid")),
                           (SPANDATA.MESSAGING_MESSAGE_RETRY_COUNT,
                            payload.get("retry_count"))):
            if value is not None:
                self.transaction.set_data(key, value)

    def succeeded(self) -> None:
        self.transaction.set_status(SPANSTATUS.OK)

    def failed(self) -> None:
        self.transaction.set_status(SPANSTATUS.INTERNAL_ERROR)

    def aborted(self) -> None:
        self.transaction.set_status(SPANSTATUS.ABORTED)

    def end(self) -> None:
        # Without the exception: sentry-sdk would set internal_error over an abort's status.
        self.transaction.__exit__(None, None, None)


def exception_event(exc: BaseException) -> tuple[dict, dict]:
    return event_from_exception(exc, client_options=sentry_sdk.get_client().options,
                                mechanism={"type": IDENTIFIER, "handled": False})


def sends_job_args() -> bool:
    return should_send_default_pii()
