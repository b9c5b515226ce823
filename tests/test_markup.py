"""fleet.markup: Django's format_html contract, faster.

Its output must be Django's, byte for byte, for every kind of value a page
passes: agent text (markup, quotes, ampersands, any code point), numbers,
None, already-safe HTML and lazy text.
"""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from django.utils import html as django_html
from django.utils.functional import lazy
from django.utils.safestring import SafeString, mark_safe
from hypothesis import given
from hypothesis import strategies as st

from fleet import markup

values = st.one_of(
    st.text(),
    st.sampled_from(["<script>alert(1)</script>", "a & b", "\"quoted\" 'single'", "&amp;"]),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=False),
    st.booleans(),
    st.none(),
    st.text().map(mark_safe),
)


@given(st.lists(values, min_size=1, max_size=8))
def test_format_html_is_djangos(args: list[object]) -> None:
    template = "|".join(['<a title="{}">{}</a>'] * len(args))
    args = [arg for arg in args for _ in range(2)]

    ours = markup.format_html(template, *args)

    assert ours == django_html.format_html(template, *args)
    assert isinstance(ours, SafeString)


@given(st.lists(st.tuples(values, values), max_size=6), st.sampled_from(["", "\n", "<br>", "&"]))
def test_format_html_join_is_djangos(rows: list[tuple[object, object]], sep: str) -> None:
    ours = markup.format_html_join(sep, '<rect class="{}"><title>{}</title></rect>', rows)

    assert ours == django_html.format_html_join(
        sep, '<rect class="{}"><title>{}</title></rect>', rows
    )
    assert isinstance(ours, SafeString)


def test_agent_text_is_escaped_and_safe_html_is_kept() -> None:
    lazy_text = lazy(lambda: "<b>lazy</b>", str)()

    html = markup.format_html(
        "<p>{} {} {} {}</p>", "<script>x</script>", mark_safe("<i>ok</i>"), lazy_text, 7
    )

    assert html == "<p>&lt;script&gt;x&lt;/script&gt; <i>ok</i> &lt;b&gt;lazy&lt;/b&gt; 7</p>"
    assert markup.escaped(Decimal("1.50")) == "1.50"


def test_a_worker_loads_and_freezes_what_requests_use_before_the_first_one() -> None:
    # In a fresh interpreter, as a gunicorn worker imports the WSGI module.
    root = Path(__file__).resolve().parent.parent
    code = "import gc, fleet.wsgi\nprint(gc.get_freeze_count())\n"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
        env={"DJANGO_SECRET_KEY": "test", "PATH": "", "PYTHONPATH": str(root)},
        timeout=120,
    )

    assert int(result.stdout.split()[-1]) > 50_000
