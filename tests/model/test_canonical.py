"""The canonical encoding (RFC 8785): golden vectors, and the same bytes whatever the spelling."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

import orjson
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_middleware.model.canonical import CanonicalizationError, canonical_bytes, plain_canonical_bytes

VECTORS = json.loads((Path(__file__).parent / "vectors" / "canonical.json").read_text(encoding="utf-8"))

# JSON values as a store gives them back: str keys, safe and unsafe integers, finite floats, text
# with controls, quotes, non-BMP characters and private-use ones (which sort differently in UTF-16).
_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)),  # no lone surrogates: no store returns them
    max_size=12,
)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
json_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(_text, children, max_size=5),
    max_leaves=30,
)


@pytest.mark.parametrize("vector", VECTORS["canonical"], ids=lambda vector: vector["name"])
def test_golden_vectors(vector: dict[str, str]):
    """Each committed vector's input, decoded as the stores decode it, encodes to its committed bytes."""
    assert canonical_bytes(orjson.loads(vector["input"])) == vector["output"].encode("utf-8")


def test_the_rfc_vectors_also_match_the_reference_encoder():
    """The RFC's own examples agree with the rfc8785 package, so the vectors are not our own say-so."""
    for vector in VECTORS["canonical"]:
        if vector["name"].startswith("rfc8785-"):
            assert rfc8785.dumps(orjson.loads(vector["input"])) == vector["output"].encode("utf-8")


@given(json_values)
@settings(max_examples=400)
def test_the_fast_path_writes_the_reference_bytes(value: Any):
    """Whatever the document, the encoder's output is exactly the rfc8785 package's."""
    assert canonical_bytes(value) == rfc8785.dumps(value)


@given(json_values)
@settings(max_examples=400)
def test_plain_bytes_are_the_reference_bytes_whenever_given(value: Any):
    """The writers' shortcut never answers with bytes the reference would not write."""
    plain = plain_canonical_bytes(value)
    if plain is not None:
        assert plain == rfc8785.dumps(value)


@given(st.dictionaries(_text, json_values, max_size=8), st.randoms(use_true_random=False))
def test_key_order_does_not_matter(document: dict[str, Any], rng: Any):
    """The same mapping with its keys in another order (at every level) gives the same bytes."""

    def shuffled(value: Any) -> Any:
        if isinstance(value, dict):
            items = list(value.items())
            rng.shuffle(items)
            return {key: shuffled(item) for key, item in items}
        if isinstance(value, list):
            return [shuffled(item) for item in value]
        return value

    assert canonical_bytes(shuffled(document)) == canonical_bytes(document)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_number_spelling_does_not_matter(number: float):
    """A number written as repr, with an exponent, or with trailing zeros reads back to the same bytes."""
    plain = repr(number)
    spellings = {plain, f"{number:.16e}", plain + "0" if "." in plain and "e" not in plain else plain}
    encoded = {canonical_bytes(orjson.loads(f'{{"n": {spelling}}}')) for spelling in spellings}
    assert len(encoded) == 1


def test_integers_and_equal_floats_encode_alike():
    """1, 1.0 and 1e0 are one JSON number: one encoding."""
    assert canonical_bytes(orjson.loads("[1, 1.0, 1e0, 100, 1e2]")) == b"[1,1,1,100,100]"


def test_whitespace_and_escapes_do_not_matter():
    """Pretty-printed JSON with escaped characters encodes as its compact, unescaped form."""
    loose = '{\n  "b" : "caf\\u00e9\\/",\n  "a" : [ 1 , 2 ]\n}'
    assert canonical_bytes(orjson.loads(loose)) == '{"a":[1,2],"b":"café/"}'.encode()


def test_values_do_matter():
    """A changed value, key or type changes the bytes."""
    base = canonical_bytes({"a": 1, "b": "x"})
    assert canonical_bytes({"a": 2, "b": "x"}) != base
    assert canonical_bytes({"a": 1, "c": "x"}) != base
    assert canonical_bytes({"a": "1", "b": "x"}) != base


def test_integers_beyond_doubles_become_text_rather_than_fail():
    """An integer JCS cannot represent is encoded as its digits, even deep inside a document."""
    assert canonical_bytes({"x": [{"id": 2**60}]}) == b'{"x":[{"id":"1152921504606846976"}]}'
    assert canonical_bytes(2**53 - 1) == b"9007199254740991"


def test_values_no_json_has_are_refused():
    """NaN, infinity and lone surrogates raise CanonicalizationError (no store returns them)."""
    for bad in (math.nan, math.inf, "\ud800"):
        with pytest.raises(CanonicalizationError):
            canonical_bytes({"v": bad})


@given(json_values)
@settings(max_examples=400)
def test_the_plain_bytes_are_the_canonical_bytes_or_none(value: Any):
    """Whenever plain_canonical_bytes answers, it answers the reference bytes."""
    plain = plain_canonical_bytes(value)
    assert plain is None or plain == rfc8785.dumps(value)


def test_plain_bytes_answer_for_an_audit_record_and_refuse_the_rest():
    """A record of text, safe integers and nulls gets its bytes; floats (also in a tuple or an
    enum), odd types and text beyond the BMP (which need the walk or the reference encoder)
    get None."""
    record = {"event": {"id": "e1", "outcome": "success"}, "http": {"status": 201}, "t": "05:53:39.954Z"}
    assert plain_canonical_bytes(record) == rfc8785.dumps(record)
    for plain in ({"text": "a,1.5 [2e3 :null"}, {"n": None}, None, {"n": 'quote " inside'}, {"n": (1, "a")}):
        assert plain_canonical_bytes(plain) == rfc8785.dumps(plain), plain

    class Ratio(float, Enum):
        HALF = 0.5

    for refused in (
        {"n": 1.5},
        {"n": [1e16]},
        {"n": (1, 2.5)},
        {"n": Ratio.HALF},
        {"n": 2**53},
        {"n": "\U0001f600"},
        {"n": Decimal("1")},
        {"n": datetime(2026, 1, 1, tzinfo=timezone.utc)},
        {1: "int key"},
        2.5,
    ):
        assert plain_canonical_bytes(refused) is None, refused
