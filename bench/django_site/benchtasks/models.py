from django.db import models


class Row(models.Model):
    """What the ``write_row`` task writes, one a task."""

    label = models.CharField(max_length=40)
