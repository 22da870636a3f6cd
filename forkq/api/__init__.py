"""The read and admin side: queues, the schedule/retry/dead sets, processes, stats.

Used by the web UI, ``forkqctl`` and tests, in whatever process they run; the server side
never imports it. Everything goes through ``forkq.keys.Keys`` over one decode_responses client.

    api = Api.from_config(config)            # or Api(redis_client, Keys(namespace))
    api.queue("default").size
    api.retries.page(0, 25)
    api.dead.retry_all()
    Queue("default").size                    # module-level: the forkq client's own Redis

Entries keep the raw JSON text they were read as: it is the member to ZREM or LREM, so an admin
action removes exactly what was shown, or nothing when someone else moved it first. Callers name
an entry by its ``ident`` (the jid, or a digest of the text when the jid is missing or unusable),
plus its score in a sorted set or its index in a queue as a hint; the text is looked up again in
Redis, so no job's text has to travel through a form or a URL. A job that is not valid JSON is
still listed (as raw text) and can be deleted or killed.

An ``Api`` made ``read_only`` never writes: listing processes then leaves the members of
``processes`` whose heartbeat expired in place instead of pruning them.

Modules: ``source`` (``Store``: the Redis and keys read, by default the process's), ``entry``
(one job as stored, and its timestamps), ``queue``, ``sets`` (schedule, retry, dead),
``processes`` (heartbeats and running jobs), ``batches`` (open batches), ``admin`` (``Api``:
stats, remote signals, the periodic leader), ``jobmetrics`` (the per-class metrics, read side);
in the cluster layout, ``queuesets`` (every queue's ``schedule`` or ``retry`` read as one) and
``clustermove`` (the moves to a queue there, within a slot or in two steps).
"""

from .admin import SIGNALS, Api, DayStat, default
from .batches import Batches
from .entry import Entry, as_date, decode_backtrace, seconds, wire
from .processes import Process, Work
from .queue import Queue, latency
from .sets import BATCH, DeadSet, FailedSet, RetrySet, ScheduledSet, SortedSet, glob_escape

__all__ = ["BATCH", "SIGNALS", "Api", "Batches", "DayStat", "DeadSet", "Entry", "FailedSet", "Process",
           "Queue", "RetrySet", "ScheduledSet", "SortedSet", "Work", "as_date", "decode_backtrace",
           "default", "glob_escape", "latency", "seconds", "wire"]
