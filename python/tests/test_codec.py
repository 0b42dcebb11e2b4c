import math

import pytest

from craft import codec


VALUES = [None, True, False, 0, 1, 127, 128, 255, 256, 65535, 65536, 2**32, 2**64 - 1, -1, -32,
          -33, -128, -129, -2**15, -2**31, -2**63, 1.5, -0.0, "", "a", "é" * 40, "x" * 70000,
          b"", b"\x00\xff", b"y" * 300, b"z" * 70000, [], [1, [2, [3]]], list(range(20)), {},
          {"a": 1, "b": [1, 2]}, {i: i for i in range(20)}]


@pytest.mark.parametrize("value", VALUES)
def test_roundtrip(value):
    assert codec.loads(codec.dumps(value)) == value
    assert codec._py_loads(codec._py_dumps(value)) == value


def test_pure_python_matches_msgpack_layout():
    # Known encodings from the msgpack spec.
    assert codec._py_dumps(None) == b"\xc0"
    assert codec._py_dumps([1, "a"]) == b"\x92\x01\xa1a"
    assert codec._py_dumps({"k": b"v"}) == b"\x81\xa1k\xc4\x01v"
    assert codec._py_dumps(-1) == b"\xff"


def test_tuple_is_list_and_nan():
    assert codec.loads(codec.dumps((1, 2))) == [1, 2]
    assert math.isnan(codec.loads(codec.dumps(float("nan"))))


@pytest.mark.parametrize("bad", [b"", b"\x92\x01", b"\xc1", b"\xdd\xff\xff\xff\xff", b"\x01\x02"])
def test_bad_input_raises_codec_error(bad):
    with pytest.raises(codec.CodecError):
        codec._py_loads(bad)


def test_unencodable():
    with pytest.raises(codec.CodecError):
        codec._py_dumps(object())
    with pytest.raises(codec.CodecError):
        codec._py_dumps(2**64)
    assert not codec.json_like({"a": object()})
    assert codec.json_like({"a": [1, "b"]})


def test_command_helper():
    assert codec.loads(codec.command("set", "k", 1)) == ["set", "k", 1]
