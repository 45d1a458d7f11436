"""Python values through the netsvc value model and its wire encoding (MessagePack)."""

from __future__ import annotations

import datetime as dt
import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import netsvc
from netsvc._netsvc import roundtrip

ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
scalars = (st.none() | st.booleans() | ints | st.floats(allow_nan=False) | st.text()
           | st.binary() | st.dates()
           | st.times().map(lambda t: t.replace(microsecond=t.microsecond))
           | st.datetimes() | st.datetimes(timezones=st.just(dt.timezone(dt.timedelta(hours=-5))))
           | st.timedeltas())
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=5), inner, max_size=4), max_leaves=20)


def same(a: object, b: object) -> bool:
    """Equality that also tells bool from int and float from int."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))  # type: ignore[arg-type]
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)  # type: ignore[union-attr,index]
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)  # type: ignore[arg-type]
    return a == b


@settings(max_examples=300, deadline=None)
@given(values)
def test_roundtrip_is_lossless(v: object) -> None:
    assert same(roundtrip(v), v)


@given(st.lists(values, max_size=4).map(tuple))
def test_tuple_becomes_list(t: tuple[object, ...]) -> None:
    assert same(roundtrip(t), list(t))


def test_floats_bit_exact() -> None:
    for f in (-0.0, math.inf, -math.inf, 5e-324, 1.0000000000000002):
        assert struct.pack("<d", roundtrip(f)) == struct.pack("<d", f)
    nan = struct.unpack("<d", b"\x01\x00\x00\x00\x00\x00\xf8\x7f")[0]
    assert struct.pack("<d", roundtrip(nan)) == struct.pack("<d", nan)


def test_int_bounds() -> None:
    assert roundtrip(2**64 - 1) == 2**64 - 1
    assert roundtrip(-(2**63)) == -(2**63)
    with pytest.raises(OverflowError, match="outside the range"):
        roundtrip(2**64)
    with pytest.raises(OverflowError):
        roundtrip(-(2**63) - 1)


def test_str_and_bytes_stay_apart() -> None:
    assert roundtrip("abc") == "abc" and type(roundtrip(b"abc")) is bytes
    assert roundtrip(bytearray(b"x")) == b"x"
    assert roundtrip(netsvc.Binary(b"y")) == b"y"


def test_dict_keys_must_be_str() -> None:
    with pytest.raises(TypeError, match="str keys"):
        roundtrip({1: "a"})


def test_other_types_are_a_clear_type_error() -> None:
    with pytest.raises(TypeError, match="cannot carry a value of type set"):
        roundtrip({1, 2})
    with pytest.raises(TypeError, match="complex"):
        roundtrip(1j)


def test_cycles_and_depth() -> None:
    a: list[object] = []
    a.append(a)
    with pytest.raises(ValueError, match="deeper than the limit"):
        roundtrip(a)
    deep: object = 1
    for _ in range(63):
        deep = [deep]
    assert roundtrip(deep) == deep


def test_opaque_roundtrip() -> None:
    o = netsvc.Opaque("my:type", "x")
    back = roundtrip(o)
    assert isinstance(back, netsvc.Opaque) and (back.type, back.data) == ("my:type", b"x")


def test_aware_time_refused() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        roundtrip(dt.time(1, 2, tzinfo=dt.timezone.utc))
