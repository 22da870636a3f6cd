"""An email backend that sends through a task: ``send_mail`` returns at once, a worker sends.

Django 6.1+ (``MAILERS``): the worker delivers with the mailer named by the ``mailer`` option.

    MAILERS = {"default": {"BACKEND": "forkq.contrib.django.mail.EmailBackend",
                           "OPTIONS": {"mailer": "smtp"}},
               "smtp": {"OPTIONS": {"host": "mail.example.com", "port": 587}}}

Before (``EMAIL_BACKEND``): the worker delivers with ``FORKQ_EMAIL_BACKEND``.

    EMAIL_BACKEND = "forkq.contrib.django.mail.EmailBackend"
    FORKQ_EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"   # the default

Each message becomes one ``send_email`` task, on the ``FORKQ_EMAIL_QUEUE`` queue (default
``default``) of the ``FORKQ_EMAIL_TASK_BACKEND`` tasks backend (default ``default``), so a
failed delivery is retried as any task. The worker's Django set-up defines the task when the
settings use this backend (``setup.discover_tasks``); nothing needs listing under ``require:``.

A message travels as JSON: subject, body, addresses, headers, alternatives and attachments
given as ``(filename, content, mimetype)`` (bytes travel base64-encoded). A ``MIMEBase``
attachment is refused at send time with the advice to pass a tuple.
"""

from __future__ import annotations

import base64
from email.mime.base import MIMEBase
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.mail.backends.base import BaseEmailBackend
from django.utils.module_loading import import_string

from .compat import DEFAULT_TASK_QUEUE_NAME, task

_ADDRESS_FIELDS = ("to", "cc", "bcc", "reply_to")
_SMTP = "django.core.mail.backends.smtp.EmailBackend"


class EmailBackend(BaseEmailBackend):
    def __init__(self, *args, mailer: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        #: the MAILERS alias that delivers; None: FORKQ_EMAIL_BACKEND
        self.mailer = mailer

    def send_messages(self, email_messages) -> int:
        for message in email_messages:
            send_email.enqueue(serialize(message), self.mailer)
        return len(email_messages)


@task(queue_name=getattr(settings, "FORKQ_EMAIL_QUEUE", DEFAULT_TASK_QUEUE_NAME),
      backend=getattr(settings, "FORKQ_EMAIL_TASK_BACKEND", "default"))
def send_email(message: dict[str, Any], mailer: str | None = None) -> int:
    """Send one queued message with the real backend; returns how many were sent (0 or 1)."""
    return _delivery(mailer).send_messages([deserialize(message)])


def _delivery(mailer: str | None):
    if mailer is not None:
        from django.core.mail import mailers

        return mailers[mailer]
    return import_string(getattr(settings, "FORKQ_EMAIL_BACKEND", _SMTP))()


def serialize(message) -> dict[str, Any]:
    data = {"subject": str(message.subject), "body": str(message.body),
            "from_email": message.from_email, "headers": dict(message.extra_headers),
            "content_subtype": message.content_subtype,
            "alternatives": [[content, mimetype] for content, mimetype
                             in getattr(message, "alternatives", [])],
            "attachments": [_attachment(item) for item in message.attachments]}
    for name in _ADDRESS_FIELDS:
        data[name] = list(getattr(message, name))
    return data


def deserialize(data: dict[str, Any]) -> EmailMultiAlternatives:
    attachments = [(item["filename"], _content(item), item["mimetype"])
                   for item in data["attachments"]]
    message = EmailMultiAlternatives(
        subject=data["subject"], body=data["body"], from_email=data["from_email"],
        to=data["to"], cc=data["cc"], bcc=data["bcc"], reply_to=data["reply_to"],
        headers=data["headers"], attachments=attachments,
        alternatives=[tuple(pair) for pair in data["alternatives"]])
    message.content_subtype = data["content_subtype"]
    return message


def _attachment(item) -> dict[str, Any]:
    if isinstance(item, MIMEBase):
        raise TypeError("forkq.contrib.django.mail: a MIMEBase attachment cannot be queued as "
                        "JSON; attach (filename, content, mimetype) with message.attach()")
    filename, content, mimetype = item
    if isinstance(content, bytes):
        return {"filename": filename, "base64": base64.b64encode(content).decode(),
                "mimetype": mimetype}
    return {"filename": filename, "content": content, "mimetype": mimetype}


def _content(item: dict[str, Any]) -> str | bytes:
    return base64.b64decode(item["base64"]) if "base64" in item else item["content"]
