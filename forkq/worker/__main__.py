"""``python -m forkq.worker -c forkq.yml``: one worker process, without a supervisor."""

import sys

from . import main

sys.exit(main())
