"""List first under ``require:`` to set Django up in the worker (``setup.setup()``), and fail at
start, naming the fix, when ``DJANGO_SETTINGS_MODULE`` is not set:

    require: [forkq.contrib.django.boot]

(The installed apps' ``tasks`` modules need no listing: the set-up imports them.)
"""

from .setup import setup

setup()
