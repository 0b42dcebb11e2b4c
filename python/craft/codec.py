"""msgpack helpers so that a state machine can take and return plain Python values.

    from craft import codec
    node.apply(codec.dumps({"op": "set", "key": "x", "value": 1}))

    class KV(craft.StateMachine):
        def apply(self, command, index):
            cmd = codec.loads(command)
            ...
            return codec.dumps(result)

Supported values: None, bool, int (-2**63 .. 2**64-1), float, str, bytes, list/tuple (decoded
as lists), dict. The encoding is standard msgpack (bin for bytes, str for text, maps keep their
order), so a Lua node or any msgpack library reads the same bytes. When the `msgpack` package is
installed it is used (faster); otherwise a small pure-Python codec with the same output.
"""

import struct
from typing import Any, Callable, Dict, List, Tuple

__all__ = ["dumps", "loads", "command", "CodecError", "json_like"]


class CodecError(ValueError):
    """The bytes are not msgpack this codec reads, or a value it cannot encode."""


def _pack(obj: Any, out: List[bytes]) -> None:
    if obj is None:
        out.append(b"\xc0")
    elif obj is True:
        out.append(b"\xc3")
    elif obj is False:
        out.append(b"\xc2")
    elif isinstance(obj, int):
        if 0 <= obj < 0x80:
            out.append(bytes((obj,)))
        elif -32 <= obj < 0:
            out.append(struct.pack("b", obj))
        elif 0 <= obj <= 0xFF:
            out.append(b"\xcc" + bytes((obj,)))
        elif 0 <= obj <= 0xFFFF:
            out.append(b"\xcd" + struct.pack(">H", obj))
        elif 0 <= obj <= 0xFFFFFFFF:
            out.append(b"\xce" + struct.pack(">I", obj))
        elif 0 <= obj <= 0xFFFFFFFFFFFFFFFF:
            out.append(b"\xcf" + struct.pack(">Q", obj))
        elif -0x80 <= obj < 0:
            out.append(b"\xd0" + struct.pack(">b", obj))
        elif -0x8000 <= obj < 0:
            out.append(b"\xd1" + struct.pack(">h", obj))
        elif -0x80000000 <= obj < 0:
            out.append(b"\xd2" + struct.pack(">i", obj))
        elif -0x8000000000000000 <= obj < 0:
            out.append(b"\xd3" + struct.pack(">q", obj))
        else:
            raise CodecError(f"integer out of msgpack's range: {obj}")
    elif isinstance(obj, float):
        out.append(b"\xcb" + struct.pack(">d", obj))
    elif isinstance(obj, str):
        b = obj.encode("utf-8")
        n = len(b)
        if n < 32:
            out.append(bytes((0xA0 | n,)))
        elif n <= 0xFF:
            out.append(b"\xd9" + bytes((n,)))
        elif n <= 0xFFFF:
            out.append(b"\xda" + struct.pack(">H", n))
        else:
            out.append(b"\xdb" + struct.pack(">I", n))
        out.append(b)
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        b = bytes(obj)
        n = len(b)
        if n <= 0xFF:
            out.append(b"\xc4" + bytes((n,)))
        elif n <= 0xFFFF:
            out.append(b"\xc5" + struct.pack(">H", n))
        else:
            out.append(b"\xc6" + struct.pack(">I", n))
        out.append(b)
    elif isinstance(obj, (list, tuple)):
        n = len(obj)
        if n < 16:
            out.append(bytes((0x90 | n,)))
        elif n <= 0xFFFF:
            out.append(b"\xdc" + struct.pack(">H", n))
        else:
            out.append(b"\xdd" + struct.pack(">I", n))
        for x in obj:
            _pack(x, out)
    elif isinstance(obj, dict):
        n = len(obj)
        if n < 16:
            out.append(bytes((0x80 | n,)))
        elif n <= 0xFFFF:
            out.append(b"\xde" + struct.pack(">H", n))
        else:
            out.append(b"\xdf" + struct.pack(">I", n))
        for k, v in obj.items():
            _pack(k, out)
            _pack(v, out)
    else:
        raise CodecError(f"cannot encode a {type(obj).__name__} (use None, bool, int, float, "
                         f"str, bytes, list, tuple or dict)")


def _need(data: bytes, pos: int, n: int) -> None:
    if pos + n > len(data):
        raise CodecError("truncated msgpack data")


_FIXED = {0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q", 0xD0: ">b", 0xD1: ">h", 0xD2: ">i",
          0xD3: ">q", 0xCA: ">f", 0xCB: ">d"}


def _unpack(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
    if depth > 512:
        raise CodecError("msgpack data nested too deeply")
    _need(data, pos, 1)
    b = data[pos]
    pos += 1
    if b < 0x80:
        return b, pos
    if b >= 0xE0:
        return b - 0x100, pos
    if 0xA0 <= b <= 0xBF:
        n = b & 0x1F
        _need(data, pos, n)
        return data[pos:pos + n].decode("utf-8"), pos + n
    if 0x90 <= b <= 0x9F:
        return _unpack_array(data, pos, b & 0x0F, depth)
    if 0x80 <= b <= 0x8F:
        return _unpack_map(data, pos, b & 0x0F, depth)
    if b == 0xC0:
        return None, pos
    if b == 0xC2:
        return False, pos
    if b == 0xC3:
        return True, pos
    if b in _FIXED:
        fmt = _FIXED[b]
        size = struct.calcsize(fmt)
        _need(data, pos, size)
        return struct.unpack_from(fmt, data, pos)[0], pos + size
    if b in (0xC4, 0xC5, 0xC6, 0xD9, 0xDA, 0xDB):
        fmt = {0xC4: ">B", 0xC5: ">H", 0xC6: ">I", 0xD9: ">B", 0xDA: ">H", 0xDB: ">I"}[b]
        size = struct.calcsize(fmt)
        _need(data, pos, size)
        n = struct.unpack_from(fmt, data, pos)[0]
        pos += size
        _need(data, pos, n)
        raw = data[pos:pos + n]
        return (bytes(raw) if b <= 0xC6 else raw.decode("utf-8")), pos + n
    if b in (0xDC, 0xDD, 0xDE, 0xDF):
        fmt = ">H" if b in (0xDC, 0xDE) else ">I"
        size = struct.calcsize(fmt)
        _need(data, pos, size)
        n = struct.unpack_from(fmt, data, pos)[0]
        pos += size
        if b in (0xDC, 0xDD):
            return _unpack_array(data, pos, n, depth)
        return _unpack_map(data, pos, n, depth)
    raise CodecError(f"unsupported msgpack type byte 0x{b:02x}")


def _unpack_array(data: bytes, pos: int, n: int, depth: int) -> Tuple[List[Any], int]:
    if n > len(data) - pos:  # every element takes at least one byte
        raise CodecError("truncated msgpack data")
    out = []
    for _ in range(n):
        x, pos = _unpack(data, pos, depth + 1)
        out.append(x)
    return out, pos


def _unpack_map(data: bytes, pos: int, n: int, depth: int) -> Tuple[Dict[Any, Any], int]:
    if 2 * n > len(data) - pos:
        raise CodecError("truncated msgpack data")
    out: Dict[Any, Any] = {}
    for _ in range(n):
        k, pos = _unpack(data, pos, depth + 1)
        v, pos = _unpack(data, pos, depth + 1)
        if isinstance(k, list):
            k = tuple(k)
        out[k] = v
    return out, pos


def _py_dumps(obj: Any) -> bytes:
    out: List[bytes] = []
    _pack(obj, out)
    return b"".join(out)


def _py_loads(data: bytes) -> Any:
    data = bytes(data)
    obj, pos = _unpack(data, 0, 0)
    if pos != len(data):
        raise CodecError("extra bytes after the msgpack value")
    return obj


dumps: Callable[[Any], bytes]
loads: Callable[[bytes], Any]

try:  # the msgpack package, when installed, does the same faster
    import msgpack as _msgpack  # type: ignore[import-not-found,import-untyped,unused-ignore]

    def dumps(obj: Any) -> bytes:
        """Encodes a value as msgpack bytes."""
        try:
            return _msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]
        except (TypeError, ValueError, OverflowError) as e:
            raise CodecError(str(e)) from e

    def loads(data: bytes) -> Any:
        """Decodes msgpack bytes (lists come back as lists, maps as dicts)."""
        try:
            return _msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)
        except Exception as e:  # msgpack raises several types
            raise CodecError(str(e)) from e
except ImportError:
    dumps = _py_dumps
    loads = _py_loads


def command(op: str, *args: Any) -> bytes:
    """dumps([op, *args]): a conventional command shape for a state machine's apply()."""
    return dumps([op, *args])


def json_like(obj: Any) -> bool:
    """True if dumps(obj) would succeed (only the supported types, recursively)."""
    try:
        _py_dumps(obj)
        return True
    except CodecError:
        return False
