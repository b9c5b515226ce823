"""Search: sessions whose messages contain the words, with highlighted snippets.

Snippets are agent text: ``fleet.snippets.snippet_html`` escapes them and
puts the matches in ``<mark>``; each hit links to its message in the transcript.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from django.http import HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.safestring import SafeString
from django.views.decorators.http import require_safe
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import push_url

from fleet.forms import SearchForm
from fleet.snippets import snippet_html
from fleet.views import HtmxHttpRequest
from fleet.views.auth import dashboard_view
from sessions.models import Session
from sessions.search import (
    MAX_TERMS,
    SearchHit,
    query_word_count,
    search_messages,
)

TEMPLATE = "fleet/search.html"
RESULT_LIMIT = 30


@dataclass(frozen=True)
class Hit:
    hit: SearchHit
    snippet: SafeString
    url: str


@dataclass(frozen=True)
class Result:
    session: Session
    url: str
    hits: list[Hit]


def _results(query: str) -> list[Result]:
    results = []
    for result in search_messages(query, limit=RESULT_LIMIT):
        url = result.session.get_absolute_url()
        hits = [
            Hit(hit=hit, snippet=snippet_html(hit.snippet), url=f"{url}?at={hit.seq}#m-{hit.seq}")
            for hit in result.hits
        ]
        results.append(Result(session=result.session, url=url, hits=hits))
    return results


@require_safe
@dashboard_view
@vary_on_headers("HX-Request")
def search_page(request: HtmxHttpRequest) -> HttpResponse:
    form = SearchForm(request.GET)
    query = form.cleaned_data["q"] if form.is_valid() else ""
    context = {
        "form": form,
        "query": query,
        "results": _results(query) if query else [],
        "limit": RESULT_LIMIT,
        # More words are cut, not refused: a pasted error message still finds.
        "words_cut": MAX_TERMS if query and query_word_count(query) > MAX_TERMS else None,
    }
    if request.htmx and not request.htmx.history_restore_request:
        response = render(request, f"{TEMPLATE}#results", context)
        url = reverse("search")
        return push_url(response, f"{url}?{urlencode({'q': query})}" if query else url)
    return render(request, TEMPLATE, context)
