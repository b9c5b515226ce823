"""Search snippets as the fleet app shows them: HTML for pages, marked text for the API.

``sessions.search`` answers a snippet as plain text plus the character ranges
of its matches (``Snippet``); the markup is added here. Snippet text is agent
content, so it is untrusted: the HTML form escapes every piece of it, inside
and outside the highlights.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from sessions.search import Snippet


def pieces(snippet: Snippet) -> Iterator[tuple[str, bool]]:
    """The snippet's text in order, as (piece, highlighted) pairs.

    Ranges out of order, overlapping, empty or past the text are skipped (or
    cut at its end): whatever they hold, every character is given once.
    """
    text = snippet.text
    position = 0
    for start, end in snippet.highlights:
        end = min(end, len(text))
        if start < position or end <= start:
            continue
        if start > position:
            yield text[position:start], False
        yield text[start:end], True
        position = end
    if position < len(text):
        yield text[position:], False


def snippet_html(snippet: Snippet) -> SafeString:
    """The snippet as HTML: each piece escaped, the matches in ``<mark>``.

    ``<script>`` in agent text comes out as ``&lt;script&gt;``, inside a
    highlight or next to one.
    """
    html = "".join(
        f"<mark>{escape(piece)}</mark>" if marked else str(escape(piece))
        for piece, marked in pieces(snippet)
    )
    return mark_safe(html)  # noqa: S308 -- every piece is escaped above


def snippet_marked(snippet: Snippet, start: str = "**", end: str = "**") -> str:
    """The snippet as plain text, matches between ``start`` and ``end``.

    The default is Markdown bold (``**word**``, the API's ``snippets``). The
    text is not escaped: escape it for whatever format it goes into.
    """
    return "".join(f"{start}{piece}{end}" if marked else piece for piece, marked in pieces(snippet))
