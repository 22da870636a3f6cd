"""List first under ``require:`` to set Django up in the worker (``setup.setup()``):

    require: [forkq.contrib.django.boot, shop.tasks]
"""

from .setup import setup

setup()
