"""Model instances as job arguments, by reference (opt-in): the row is loaded fresh at run time.

    class SendReceipt(ModelArgs, forkq.Job):
        def perform(self, order, note):      # order is a fresh shop.Order
            ...

    SendReceipt.perform_async(order, "thanks")   # pushes {"_model": "shop.order", "_pk": 7}

Only jobs that mix in ``ModelArgs`` accept instances, as top-level arguments; every other
argument, and every other job, stays JSON-only. At enqueue an instance (saved: it has a primary
key) becomes a reference; at run time the reference is loaded with ``_default_manager`` from
the model the app registry knows by that label (nothing is imported from a payload). A row
deleted in between raises ``RowGone``, and the job goes to the dead set at once: retrying
cannot bring the row back. A job's own ``retry_in`` still decides for other errors.
"""

from __future__ import annotations

from typing import Any, Iterable

from django.apps import apps
from django.db import models

from ...errors import ForkqError
from ...job import Setter

MODEL_KEY, PK_KEY = "_model", "_pk"


class RowGone(ForkqError):
    """A referenced row no longer exists; the job is sent to the dead set without retries."""


def dump(value: Any, where: str) -> Any:
    """A model instance as its reference; anything else unchanged."""
    if not isinstance(value, models.Model):
        return value
    if value.pk is None:
        raise TypeError(f"{where} is an unsaved {value._meta.label}; save it before enqueueing "
                        f"(a job loads the row by its primary key)")
    pk = value.pk if isinstance(value.pk, (int, str)) else str(value.pk)
    return {MODEL_KEY: value._meta.label_lower, PK_KEY: pk}


def load(value: Any, where: str) -> Any:
    """The fresh row a reference names; anything else unchanged."""
    if not (isinstance(value, dict) and set(value) == {MODEL_KEY, PK_KEY}):
        return value
    try:
        model = apps.get_model(value[MODEL_KEY])
    except (LookupError, ValueError) as exc:
        raise RowGone(f"{where} refers to model {value[MODEL_KEY]!r}, which is not installed "
                      f"({exc})") from None
    try:
        return model._default_manager.get(pk=value[PK_KEY])
    except model.DoesNotExist:
        raise RowGone(f"{where} refers to {model._meta.label} pk={value[PK_KEY]!r}, which no "
                      f"longer exists (deleted after the enqueue); a retry cannot bring it back"
                      ) from None


def _kill_when_row_gone(own_retry_in):
    def retry_in(count: int, exc: BaseException):
        if isinstance(exc, RowGone):
            return "kill"
        return own_retry_in(count, exc) if own_retry_in else None

    retry_in.kills_when_row_gone = True
    return retry_in


def _loading(perform):
    def load_then_perform(self, *args: Any) -> Any:
        where = type(self).wire_name()
        loaded = [load(value, f"{where}: args[{index}]") for index, value in enumerate(args)]
        return perform(self, *loaded)

    load_then_perform.__wrapped__ = perform
    return load_then_perform


class ModelArgs:
    """Mix in before ``forkq.Job`` to pass model instances to ``perform_*``."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "perform" in cls.__dict__:
            cls.perform = _loading(cls.__dict__["perform"])
        own_retry_in = cls.options.get("retry_in")
        if not getattr(own_retry_in, "kills_when_row_gone", False):
            cls.options = {**cls.options, "retry_in": _kill_when_row_gone(own_retry_in)}

    @classmethod
    def set(cls, **options: Any) -> "ModelSetter":
        return ModelSetter(cls, options)

    @classmethod
    def perform_async(cls, *args: Any) -> str | None:
        return ModelSetter(cls, {}).perform_async(*args)

    @classmethod
    def perform_in(cls, seconds: float, *args: Any) -> str | None:
        return ModelSetter(cls, {}).perform_in(seconds, *args)

    @classmethod
    def perform_at(cls, timestamp: float, *args: Any) -> str | None:
        return ModelSetter(cls, {}).perform_at(timestamp, *args)

    @classmethod
    def perform_bulk(cls, args_list: Iterable[list], batch_size: int = 1000) -> list[str]:
        return ModelSetter(cls, {}).perform_bulk(args_list, batch_size)


class ModelSetter(Setter):
    """``Setter`` that turns model instances into references before the push."""

    def set(self, **options: Any) -> "ModelSetter":
        return ModelSetter(self.job_class, {**self.options, **options})

    def perform_async(self, *args: Any) -> str | None:
        return super().perform_async(*self._dump(args, "perform_async"))

    delay = perform_async

    def perform_in(self, seconds: float, *args: Any) -> str | None:
        return super().perform_in(seconds, *self._dump(args, "perform_in"))

    def perform_at(self, timestamp: float, *args: Any) -> str | None:
        return super().perform_at(timestamp, *self._dump(args, "perform_at"))

    def perform_bulk(self, args_list: Iterable[list], batch_size: int = 1000) -> list[str]:
        dumped = (self._dump(args, f"perform_bulk: item {index}") if isinstance(args, list)
                  else args for index, args in enumerate(args_list))
        return super().perform_bulk(dumped, batch_size)

    def _dump(self, args: Iterable[Any], call: str) -> list[Any]:
        where = f"{self.job_class.wire_name()}.{call}"
        return [dump(value, f"{where}: args[{index}]") for index, value in enumerate(args)]
