#!/usr/bin/env python
"""Django's command-line utility for Fleet."""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fleet.settings")
    # Django's, plus one structured log line per command run (fleet/log.py).
    from fleet.log import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
