"""``python -m nameserver``: the same as ``remoteobj-ns``."""

import sys

from .cli import main

sys.exit(main())
