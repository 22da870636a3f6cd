"""The names the integration gives what it sends, the same under sentry-sdk 2.x and 3.x."""

#: the integration's name in sentry-sdk, and the ``mechanism`` of the events it sends
IDENTIFIER = "forkq"
#: the payload field that carries the enqueuing code's Sentry trace headers
TRACE_FIELD = "sentry"
#: ``op`` of a job's run, in sentry-sdk's ``queue.task.<system>`` naming
TASK_OP = "queue.task.forkq"
#: ``origin`` of what the integration starts, in sentry-sdk's ``auto.queue.<system>`` naming
ORIGIN = f"auto.queue.{IDENTIFIER}"
