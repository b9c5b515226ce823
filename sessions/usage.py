"""Token counts of a usage block, normalised by the block's shape.

Agents forward the usage object their provider returned, unchanged; Fleet
stores the OpenTelemetry GenAI counts (DESIGN "Tokens and cost"): prompt is
all input including cache reads and writes, completion all output including
reasoning. Each provider's object is told apart by its field names, never
by a guess:

========================  ==============================================  ==================
shape                     told apart by                                   input counts cache
========================  ==============================================  ==================
Fleet / OpenTelemetry     ``prompt_tokens`` … ``cache_creation_tokens``   included
OpenAI Chat Completions   ``prompt_tokens_details`` /                     included
                          ``completion_tokens_details``
OpenAI Responses          ``input_tokens_details`` /                      included
                          ``output_tokens_details``
Anthropic Messages        ``cache_read_input_tokens``,                    excluded (added)
                          ``cache_creation_input_tokens``,
                          ``cache_creation``, ``server_tool_use``,
                          ``service_tier``
Gemini ``usageMetadata``  its camelCase names (or the Python SDK's        included
                          snake_case ones)
koda                      ``thinking_tokens``                             excluded (added)
========================  ==============================================  ==================

``input_tokens`` alone (with ``output_tokens``/``total_tokens``) is both
Anthropic's (input without cache) and OpenAI Responses' (input with cache):
it is refused unless a ``convention`` says which, never guessed. A block
naming fields of two shapes is refused, and so is an explicit ``convention``
that contradicts the shape. Counts of a provider's own fields may be
``null`` (an SDK's dump of an absent count); details objects may carry
breakdowns Fleet does not store (audio, modality lists): they are parts of a
count already taken, so unknown keys inside them are ignored. An unknown
top-level field is refused: it might be a count Fleet would miss.

The bound of one count (``sessions.bounds.MAX_TOKENS``) applies to each field
sent and again to each normalised count (Anthropic's prompt is a sum).
Whether reasoning fits completion and cache fits prompt is checked by
``sessions.inputs.clean_usage`` on the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sessions.bounds import MAX_TOKENS
from sessions.choices import TOKEN_FIELDS
from sessions.errors import InvalidInput

CONVENTIONS = ("otel", "anthropic")
# Fleet's own names: the stored counts, and the names every other shape maps to.
# A field that adds cache tokens to the prompt (Anthropic's, koda's) maps to both.
FLEET_NAMES = TOKEN_FIELDS
# Keys of a usage block that are not token counts (read by sessions.inputs).
NOT_COUNTS = frozenset({"cost_usd", "cost_source", "convention"})


def clean_int(value: Any, path: str, *, maximum: int = MAX_TOKENS) -> int:
    """A non-negative integer up to ``maximum`` (by default one message's token bound)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"must be a non-negative integer, got {value!r}"[:200], field=path)
    if value < 0:
        raise InvalidInput(f"must be a non-negative integer, got {value}", field=path)
    if value > maximum:
        raise InvalidInput(f"must be at most {maximum}, got {value}", field=path)
    return value


@dataclass(frozen=True, slots=True)
class Shape:
    name: str
    # Top-level count → the Fleet counts it adds to.
    counts: Mapping[str, tuple[str, ...]]
    # Details object → {count inside it → the Fleet counts it adds to}.
    details: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)
    # Top-level keys that carry nothing Fleet stores (totals, tiers, breakdowns).
    ignored: frozenset[str] = frozenset()
    # At least one of these must be present (empty: none needed).
    markers: frozenset[str] = frozenset()
    # Whether two fields may name one count (a convention's aliases): refused.
    aliases: bool = False
    # Derived once (``normalise`` runs for every message with usage): every
    # key the shape knows, and its counts then details objects in their order.
    keys: frozenset[str] = field(init=False, repr=False, compare=False)
    ordered: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys = frozenset(self.counts) | frozenset(self.details) | self.ignored
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "ordered", (*self.counts, *self.details))

    def fits(self, keys: frozenset[str]) -> bool:
        return keys <= self.keys and (not self.markers or bool(keys & self.markers))


P, C, R, CR, CW = FLEET_NAMES

_FLEET_COUNTS = {name: (name,) for name in FLEET_NAMES}
FLEET = Shape("Fleet (OpenTelemetry)", _FLEET_COUNTS, ignored=frozenset({"total_tokens"}))
_OPENAI_CACHE = {"cached_tokens": (CR,), "cache_write_tokens": (CW,)}
OPENAI_CHAT = Shape(
    "OpenAI Chat Completions",
    {"prompt_tokens": (P,), "completion_tokens": (C,)},
    details={"prompt_tokens_details": _OPENAI_CACHE, "completion_tokens_details": {R: (R,)}},
    ignored=frozenset({"total_tokens"}),
    markers=frozenset({"prompt_tokens_details", "completion_tokens_details"}),
)
OPENAI_RESPONSES = Shape(
    "OpenAI Responses",
    {"input_tokens": (P,), "output_tokens": (C,)},
    details={"input_tokens_details": _OPENAI_CACHE, "output_tokens_details": {R: (R,)}},
    ignored=frozenset({"total_tokens"}),
    markers=frozenset({"input_tokens_details", "output_tokens_details"}),
)
_ANTHROPIC_COUNTS = {
    "input_tokens": (P,),
    "output_tokens": (C,),
    "cache_read_input_tokens": (CR, P),
    "cache_creation_input_tokens": (CW, P),
}
_ANTHROPIC_EXTRAS = frozenset({"cache_creation", "server_tool_use", "service_tier"})
ANTHROPIC = Shape(
    "Anthropic Messages",
    _ANTHROPIC_COUNTS,
    ignored=_ANTHROPIC_EXTRAS,
    markers=frozenset({"cache_read_input_tokens", "cache_creation_input_tokens"})
    | _ANTHROPIC_EXTRAS,
)
# Output only (Anthropic's streaming message_delta): both readings agree.
OUTPUT_ONLY = Shape(
    "output tokens only",
    {"output_tokens": (C,)},
    ignored=frozenset({"total_tokens"}),
    markers=frozenset({"output_tokens"}),
)
_GEMINI = {
    # REST name, Python SDK name → Fleet counts. Gemini reports thoughts apart
    # from candidates: completion is both, reasoning the thoughts. Cached
    # content is a part of the prompt; tool-use prompt tokens are extra input.
    ("promptTokenCount", "prompt_token_count"): (P,),
    ("toolUsePromptTokenCount", "tool_use_prompt_token_count"): (P,),
    ("cachedContentTokenCount", "cached_content_token_count"): (CR,),
    ("candidatesTokenCount", "candidates_token_count"): (C,),
    ("thoughtsTokenCount", "thoughts_token_count"): (C, R),
}
_GEMINI_IGNORED = (
    ("totalTokenCount", "total_token_count"),
    ("trafficType", "traffic_type"),
    ("promptTokensDetails", "prompt_tokens_details"),
    ("cacheTokensDetails", "cache_tokens_details"),
    ("candidatesTokensDetails", "candidates_tokens_details"),
    ("toolUsePromptTokensDetails", "tool_use_prompt_tokens_details"),
)


def _gemini(spelling: int) -> Shape:
    counts = {names[spelling]: targets for names, targets in _GEMINI.items()}
    ignored = frozenset(names[spelling] for names in _GEMINI_IGNORED)
    # Every Gemini name marks it, but the SDK's prompt_tokens_details, which is
    # also OpenAI's.
    markers = (frozenset(counts) | ignored) - {"prompt_tokens_details"}
    return Shape("Gemini usageMetadata", counts, ignored=ignored, markers=markers)


GEMINI = _gemini(0)
GEMINI_SDK = _gemini(1)
KODA = Shape(
    "koda",
    {P: (P,), C: (C,), CR: (CR, P), CW: (CW, P), "thinking_tokens": (R,)},
    markers=frozenset({"thinking_tokens"}),
)
# What a named convention accepts: Fleet's names and Anthropic's as aliases
# (``"convention": "anthropic"``, input without cache), or Fleet's names and
# OpenTelemetry's input/output names (``"convention": "otel"``, input with cache).
ANTHROPIC_CONVENTION = Shape(
    "the anthropic convention",
    {
        P: (P,),
        C: (C,),
        R: (R,),
        CR: (CR, P),
        CW: (CW, P),
        "input_tokens": (P,),
        "output_tokens": (C,),
        "cache_read_input_tokens": (CR, P),
        "cache_creation_input_tokens": (CW, P),
        "thinking_tokens": (R,),
    },
    ignored=_ANTHROPIC_EXTRAS | {"total_tokens"},
    aliases=True,
)
OTEL_CONVENTION = Shape(
    "the otel convention",
    {**_FLEET_COUNTS, "input_tokens": (P,), "output_tokens": (C,)},
    ignored=frozenset({"total_tokens"}),
    aliases=True,
)

UNSAID = (FLEET, OPENAI_CHAT, OPENAI_RESPONSES, ANTHROPIC, OUTPUT_ONLY, GEMINI, GEMINI_SDK, KODA)
BY_CONVENTION = {
    None: UNSAID,
    "otel": (OTEL_CONVENTION, OPENAI_CHAT, OPENAI_RESPONSES, GEMINI, GEMINI_SDK),
    "anthropic": (ANTHROPIC_CONVENTION,),
}
_AMBIGUOUS = (
    "cannot tell Anthropic's input_tokens (cache tokens left out) from OpenAI Responses' "
    "(cache tokens included): forward the provider's whole usage object (Anthropic's has "
    "cache_read_input_tokens, OpenAI's input_tokens_details), or send "
    '"convention": "anthropic" (input without cache) or "convention": "otel" (input with cache)'
)


@dataclass(slots=True)
class Counts:
    """The normalised counts, and for each the field sent that gave it (to blame)."""

    shape: Shape
    values: dict[str, int]
    sources: dict[str, str]


def normalise(value: Mapping[str, Any], path: str, convention: str | None) -> Counts:
    """The token counts of ``value`` in Fleet's names, by the block's shape.

    ``convention`` is the one the client named (in the block or for the
    request), ``None`` when it named none.
    """
    keys = frozenset(map(str, value.keys() - NOT_COUNTS))
    for shape in BY_CONVENTION[convention]:
        if shape.fits(keys):
            break
    else:
        raise _refusal(keys, path, convention)
    values = dict.fromkeys(FLEET_NAMES, 0)
    sources: dict[str, str] = {}
    named: dict[str, str] = {}

    def add(name: str, raw: Any, where: str, targets: tuple[str, ...]) -> None:
        if raw is None and name not in FLEET_NAMES:
            return  # a provider SDK's dump of a count it did not report
        # clean_int's rule, its common case first (a plain int within the bound).
        count = raw if type(raw) is int and 0 <= raw <= MAX_TOKENS else clean_int(raw, where)
        # Under a convention, Fleet's and the provider's name for one count: one only.
        if shape.aliases and (other := named.setdefault(targets[0], name)) != name:
            raise InvalidInput(
                f"{other} and {name} both name the {targets[0]} count; send one",
                field=where,
            )
        for target in targets:
            values[target] += count
            sources.setdefault(target, where)

    # The shape's counts, then its details objects, in the shape's order (the
    # keys it ignores carry nothing).
    for name in shape.ordered:
        if name not in keys:
            continue
        where = f"{path}.{name}"
        raw = value[name]
        if name in shape.counts:
            add(name, raw, where, shape.counts[name])
        else:
            if raw is None:
                continue
            if not isinstance(raw, Mapping):
                raise InvalidInput("must be an object of token counts", field=where)
            for inner, targets in shape.details[name].items():
                if inner in raw:
                    add(inner, raw[inner], f"{where}.{inner}", targets)
    if shape is KODA and values[R] > values[C]:
        # koda counted thinking apart from completion (as its importer reads it).
        values[C] += values[R]
    for target, count in values.items():
        if count > MAX_TOKENS:
            parts = " + ".join(_contributors(value, shape, target))
            raise InvalidInput(
                f"{target} normalised from {parts} would be {count}, above the bound "
                f"of one message's tokens ({MAX_TOKENS})",
                field=sources[target],
            )
    return Counts(shape=shape, values=values, sources=sources)


def _contributors(value: Mapping[str, Any], shape: Shape, target: str) -> list[str]:
    found = [
        name for name, targets in shape.counts.items() if target in targets and value.get(name)
    ]
    for name, inner in shape.details.items():
        details = value.get(name)
        if isinstance(details, Mapping):
            found += [
                f"{name}.{key}"
                for key, targets in inner.items()
                if target in targets and details.get(key)
            ]
    return found


def _owners(name: str) -> str:
    return " or ".join(shape.name for shape in UNSAID if name in shape.keys)


def _refusal(keys: frozenset[str], path: str, convention: str | None) -> InvalidInput:
    """Why no shape fits ``keys``: an unknown field, an ambiguity, a mix or a contradiction."""
    known = frozenset().union(*(shape.keys for shape in UNSAID))
    if unknown := sorted(keys - known - ANTHROPIC_CONVENTION.keys):
        return InvalidInput(
            f"unknown usage field {unknown[0]!r}; send Fleet's names (prompt_tokens, "
            "completion_tokens, reasoning_tokens, cache_read_tokens, cache_creation_tokens) "
            "or a provider's usage object as it returned it (OpenAI, Anthropic, Gemini, koda)"[
                :400
            ],
            field=f"{path}.{unknown[0]}"[:200],
        )
    if (
        convention is None
        and "input_tokens" in keys
        and keys
        <= {
            "input_tokens",
            "output_tokens",
            "total_tokens",
        }
    ):
        return InvalidInput(_AMBIGUOUS, field=f"{path}.input_tokens")
    if convention is not None:
        allowed = frozenset().union(*(shape.keys for shape in BY_CONVENTION[convention]))
        if outside := sorted(keys - allowed):
            return InvalidInput(
                f'"convention": "{convention}" contradicts {outside[0]}, a field of '
                f"{_owners(outside[0])}, whose own shape says how it counts cache tokens: "
                "drop the convention, or send Fleet's names with it",
                field=f"{path}.{outside[0]}",
            )
    # A mix: the shape covering most fields, and the first field outside it.
    best = max(BY_CONVENTION[convention], key=lambda shape: len(keys & shape.keys))
    if not (strays := sorted(keys - best.keys)):
        # Only fields a shape ignores, none of those that tell it apart.
        name = sorted(keys)[0]
        return InvalidInput(
            f"{name} alone does not tell which provider's usage this is; send the whole "
            f"usage object (with one of {', '.join(sorted(best.markers))})"[:400],
            field=f"{path}.{name}",
        )
    stray = strays[0]
    return InvalidInput(
        f"mixes fields of {best.name} with {stray} (a field of {_owners(stray)}); send one "
        "provider's usage object as it returned it, or Fleet's names",
        field=f"{path}.{stray}",
    )
