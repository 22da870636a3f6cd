"""Exceptions forkq raises. Imported by every side (client, server, admin)."""


class ForkqError(Exception):
    """Base class of forkq's own errors."""


class ConfigError(ForkqError):
    """A configuration file, environment variable or flag is invalid; names the culprit."""


class UnknownJobError(ForkqError):
    """A payload names a job class this process has not registered (retried like any error)."""


class MalformedJobError(ForkqError):
    """A payload in Redis is not a job: bad JSON, no class, args not a list."""


class ResultRecordError(ForkqError, ValueError):
    """A job's result record in Redis cannot be read as one (another writer's, a producer's):
    names the jid and what is wrong, instead of a raw JSON or key error."""


class PoisonJobError(ForkqError):
    """A job whose process died while running it too often; it is sent to the dead set."""


class RedisUnavailableError(ForkqError):
    """No Redis could be reached or started; says where forkq looked."""


class Shutdown(BaseException):
    """Raised in a job's thread at the shutdown deadline.

    A BaseException so that a job's own ``except Exception`` does not swallow it.
    """


class Cancelled(BaseException):
    """Raised in a job's thread when the job is cancelled (``forkq.cancel``) while it runs.

    A BaseException, like ``Shutdown``, so that a job's ``except Exception`` does not swallow
    it; its ``finally`` blocks run. A cancelled job is not retried and not sent to the dead
    set."""


class SoftTimeLimitExceeded(Exception):
    """Raised in a job's thread at its ``soft_time_limit``: the job may catch it and clean up.

    An Exception, unlike ``Shutdown``: a job that does not catch it fails like any error (and
    is retried). A job blocked in a system call sees it only when the call returns."""


class TimeLimitExceeded(ForkqError):
    """The reason recorded on a job that ran past its ``time_limit`` (its process is replaced)."""


# Named as exported (``forkq.SoftTimeLimitExceeded``): the error_class a retried job shows.
SoftTimeLimitExceeded.__module__ = TimeLimitExceeded.__module__ = Cancelled.__module__ = "forkq"


class ClusterUnsupported(ForkqError):
    """A feature the cluster layout (``layout: cluster``) does not run yet, refused where it
    is asked for: at start for what the config names, at the call for the rest."""

    def __init__(self, feature: str, fix: str = "") -> None:
        super().__init__(f"{feature}: cluster mode (layout: cluster) does not support it yet"
                         f"{'; ' + fix if fix else ''}")
