"""sessions.usage: a usage block's counts by its shape, checked against genai-prices."""

from __future__ import annotations

from typing import Any

import pytest
from genai_prices import extract_usage

from sessions.errors import InvalidInput
from sessions.usage import normalise
from tests.test_api_messages import NATIVE_USAGE

# genai-prices' own extractor of each provider's response (provider, api flavor).
EXTRACTORS = {
    "anthropic_messages": ("anthropic", "default"),
    "anthropic_sdk_dump_with_nulls": None,  # its extractor refuses nulls
    "openai_chat": ("openai", "chat"),
    "openai_responses": ("openai", "responses"),
    "gemini_usage_metadata": ("google", "default"),
}


@pytest.mark.parametrize("shape", [name for name, how in EXTRACTORS.items() if how])
def test_each_provider_shape_counts_what_genai_prices_extracts(shape: str) -> None:
    usage, _ = NATIVE_USAGE[shape]
    provider, flavor = EXTRACTORS[shape]  # type: ignore[misc]
    root = "usageMetadata" if provider == "google" else "usage"

    extracted = extract_usage({root: usage}, provider_id=provider, api_flavor=flavor).usage
    ours = normalise(usage, "usage", None).values

    assert ours["prompt_tokens"] == extracted.input_tokens
    assert ours["completion_tokens"] == extracted.output_tokens
    assert ours["cache_read_tokens"] == extracted.cache_read_tokens
    assert ours["cache_creation_tokens"] == extracted.cache_write_tokens
    assert ours["reasoning_tokens"] == extracted.output_reasoning_tokens


@pytest.mark.parametrize("shape", NATIVE_USAGE)
def test_each_shape_is_recognised_by_name(shape: str) -> None:
    usage, expected = NATIVE_USAGE[shape]

    counts = normalise(usage, "usage", None)

    assert tuple(counts.values.values()) == expected


def test_a_null_fleet_count_is_still_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        normalise({"prompt_tokens": None}, "u", None)

    assert caught.value.field == "u.prompt_tokens"


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": 1, "input_tokens": 1},
        {"cache_read_tokens": 1, "cache_read_input_tokens": 1},
        {"reasoning_tokens": 1, "thinking_tokens": 1},
    ],
)
def test_under_a_convention_one_count_named_twice_is_refused(usage: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput) as caught:
        normalise(usage, "u", "anthropic")

    assert "both name" in caught.value.message


def test_a_details_object_must_be_an_object() -> None:
    with pytest.raises(InvalidInput) as caught:
        normalise({"prompt_tokens": 1, "prompt_tokens_details": 5}, "u", None)

    assert caught.value.field == "u.prompt_tokens_details"


def test_a_count_inside_details_has_the_bound_of_any_count() -> None:
    usage = {"input_tokens": 1, "input_tokens_details": {"cached_tokens": -1}}

    with pytest.raises(InvalidInput) as caught:
        normalise(usage, "u", None)

    assert caught.value.field == "u.input_tokens_details.cached_tokens"


def test_koda_thinking_counted_apart_from_completion_is_added_to_it() -> None:
    counts = normalise({"completion_tokens": 10, "thinking_tokens": 30}, "u", None)

    assert (counts.values["completion_tokens"], counts.values["reasoning_tokens"]) == (40, 30)


def every_known_key() -> list[str]:
    from sessions import usage

    return sorted(frozenset().union(*(shape.keys for shape in usage.UNSAID)))


@pytest.mark.parametrize("convention", [None, "otel", "anthropic"])
@pytest.mark.parametrize("key", every_known_key())
def test_any_known_field_alone_is_read_or_refused_naming_a_field(
    key: str, convention: str | None
) -> None:
    # Found by the API fuzzer: {"totalTokenCount": 5} was a 500.
    field = "u."
    try:
        normalise({key: 5}, "u", convention)
    except InvalidInput as refused:
        field = refused.field or ""

    assert field.startswith("u.")


def test_a_gemini_object_with_only_its_total_is_gemini() -> None:
    counts = normalise({"totalTokenCount": 5, "trafficType": "ON_DEMAND"}, "u", None)

    assert counts.shape.name == "Gemini usageMetadata"
    assert set(counts.values.values()) == {0}
