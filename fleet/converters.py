"""URL converters.

Session keys are client-chosen text and may contain ``/``. A browser removes
``.`` and ``..`` path segments before it sends a request (and ``%2e`` is a dot
to it too), so ``/sessions/./`` would arrive as ``/sessions/``. The dashboard's
session URLs therefore escape such segments with one leading ``~``: the key
``.`` is ``/sessions/~./``, ``a/../b`` is ``/sessions/a/~../b``. To stay
reversible a segment that already is tildes then one or two dots gains one more
(``~.`` → ``~~.``). Every other key reads the same in its URL.
"""

from __future__ import annotations

import re

_ESCAPED = re.compile(r"~*\.\.?")
_UNESCAPE = re.compile(r"~+\.\.?")


class SessionKeyConverter:
    regex = ".+"

    def to_python(self, value: str) -> str:
        return "/".join(
            segment[1:] if _UNESCAPE.fullmatch(segment) else segment for segment in value.split("/")
        )

    def to_url(self, value: str) -> str:
        return "/".join(
            f"~{segment}" if _ESCAPED.fullmatch(segment) else segment
            for segment in value.split("/")
        )
