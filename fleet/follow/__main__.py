"""``python -m fleet.follow``: the ``fleet-follow`` command without the installed script."""

from __future__ import annotations

import sys

from fleet.follow.cli import main

sys.exit(main())
