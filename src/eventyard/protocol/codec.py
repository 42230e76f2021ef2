"""Encode and decode generated messages, any version, with no I/O.

A message class carries a SCHEMA covering all its versions; `compile_struct` turns it into a
reader and a writer specialised for one version (regular or flexible encoding, which fields are
present, nullable or tagged) and caches them. Readers take (buffer, position) and return
(value, new position); writers append to a bytearray.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from eventyard.protocol.schema import Field, in_range

T = TypeVar("T")
Buf = bytes | bytearray | memoryview  # what readers read: a request frame is a bytearray
Reader = Callable[[Buf, int], tuple[Any, int]]
Writer = Callable[[bytearray, Any], None]


class DecodeError(ValueError):
    """The bytes do not hold a valid message of the expected type and version."""


_INT8 = struct.Struct(">b")
_INT16 = struct.Struct(">h")
_UINT16 = struct.Struct(">H")
_INT32 = struct.Struct(">i")
_UINT32 = struct.Struct(">I")
_INT64 = struct.Struct(">q")
_FLOAT64 = struct.Struct(">d")


# --- varints ---------------------------------------------------------------------------


def read_uvarint(buf: Buf, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise DecodeError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 35:
            raise DecodeError("varint too long")


def write_uvarint(out: bytearray, value: int) -> None:
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


# --- primitive readers and writers ------------------------------------------------------


def _fixed(st: struct.Struct) -> tuple[Reader, Writer]:
    size = st.size
    unpack_from = st.unpack_from
    pack = st.pack

    def read(buf: Buf, pos: int) -> tuple[Any, int]:
        if pos + size > len(buf):
            raise DecodeError("truncated field")
        return unpack_from(buf, pos)[0], pos + size

    def write(out: bytearray, value: Any) -> None:
        out += pack(value)

    return read, write


_FIXED: dict[str, tuple[Reader, Writer]] = {
    "int8": _fixed(_INT8),
    "int16": _fixed(_INT16),
    "uint16": _fixed(_UINT16),
    "int32": _fixed(_INT32),
    "uint32": _fixed(_UINT32),
    "int64": _fixed(_INT64),
    "float64": _fixed(_FLOAT64),
}


def _read_bool(buf: Buf, pos: int) -> tuple[bool, int]:
    if pos >= len(buf):
        raise DecodeError("truncated field")
    return buf[pos] != 0, pos + 1


def _write_bool(out: bytearray, value: bool) -> None:
    out.append(1 if value else 0)


def _read_uuid(buf: Buf, pos: int) -> tuple[uuid.UUID, int]:
    if pos + 16 > len(buf):
        raise DecodeError("truncated uuid")
    return uuid.UUID(bytes=bytes(buf[pos : pos + 16])), pos + 16


def _write_uuid(out: bytearray, value: uuid.UUID) -> None:
    out += value.bytes


def _length_reader(compact: bool, wide: bool) -> Callable[[Buf, int], tuple[int, int]]:
    """Length prefix: compact uvarint(n+1), else int16 (strings) or int32 (bytes, arrays)."""
    if compact:

        def read_compact(buf: Buf, pos: int) -> tuple[int, int]:
            n, pos = read_uvarint(buf, pos)
            return n - 1, pos

        return read_compact
    return _FIXED["int32" if wide else "int16"][0]


def _length_writer(compact: bool, wide: bool) -> Callable[[bytearray, int], None]:
    if compact:

        def write_compact(out: bytearray, n: int) -> None:
            write_uvarint(out, n + 1)

        return write_compact
    return _FIXED["int32" if wide else "int16"][1]


def _blob(kind: str, compact: bool, nullable: bool, view: bool = False) -> tuple[Reader, Writer]:
    """Strings and bytes: a length prefix then the payload; -1 means null.

    With `view`, the payload is read as a memoryview of the buffer, not a copy: the caller
    owns the buffer and keeps it alive and unchanged while the value is in use."""
    is_string = kind == "string"
    read_len = _length_reader(compact, wide=not is_string)
    write_len = _length_writer(compact, wide=not is_string)

    def read(buf: Buf, pos: int) -> tuple[Any, int]:
        n, pos = read_len(buf, pos)
        if n < 0:
            if not nullable:
                raise DecodeError(f"null {kind} in a non-nullable field")
            return None, pos
        end = pos + n
        if end > len(buf):
            raise DecodeError(f"truncated {kind}")
        if view:
            return memoryview(buf)[pos:end], end
        data = bytes(buf[pos:end])
        if is_string:
            try:
                return data.decode("utf-8"), end
            except UnicodeDecodeError as exc:
                raise DecodeError("string is not valid UTF-8") from exc
        return data, end

    def write(out: bytearray, value: Any) -> None:
        if value is None:
            if not nullable:
                raise ValueError(f"null value for a non-nullable {kind}")
            write_len(out, -1)
            return
        data = value.encode("utf-8") if is_string else value
        write_len(out, len(data))
        if len(data) >= BIG_BLOB and type(out) is Sink:
            out.split_off(data)
        else:
            out += data

    return read, write


def _array(elem: tuple[Reader, Writer], compact: bool, nullable: bool) -> tuple[Reader, Writer]:
    read_elem, write_elem = elem
    read_len = _length_reader(compact, wide=True)
    write_len = _length_writer(compact, wide=True)

    def read(buf: Buf, pos: int) -> tuple[Any, int]:
        n, pos = read_len(buf, pos)
        if n < 0:
            if not nullable:
                raise DecodeError("null array in a non-nullable field")
            return None, pos
        if n > len(buf) - pos:
            raise DecodeError("array longer than the frame")
        items = []
        for _ in range(n):
            item, pos = read_elem(buf, pos)
            items.append(item)
        return items, pos

    def write(out: bytearray, value: Any) -> None:
        if value is None:
            if not nullable:
                raise ValueError("null value for a non-nullable array")
            write_len(out, -1)
            return
        write_len(out, len(value))
        for item in value:
            write_elem(out, item)

    return read, write


def _nullable_struct(inner: tuple[Reader, Writer]) -> tuple[Reader, Writer]:
    """A nullable struct is preceded by an int8: -1 for null, 1 for present."""
    read_inner, write_inner = inner

    def read(buf: Buf, pos: int) -> tuple[Any, int]:
        marker, pos = _FIXED["int8"][0](buf, pos)
        if marker < 0:
            return None, pos
        return read_inner(buf, pos)

    def write(out: bytearray, value: Any) -> None:
        if value is None:
            out.append(0xFF)
        else:
            out.append(1)
            write_inner(out, value)

    return read, write


def _field_codec(f: Field, version: int, flexible: bool, views: bool) -> tuple[Reader, Writer]:
    if f.flexible is not None:  # RequestHeader.ClientId stays a classic string in v2
        flexible = in_range(version, f.flexible)
    nullable = in_range(version, f.nullable)
    kind = f.type
    if kind.startswith("[]"):
        elem_kind = kind[2:]
        if f.struct is not None:
            elem = compile_struct(f.struct, version, flexible, views)
        else:
            elem = _primitive(elem_kind, flexible, False, views)
        return _array(elem, flexible, nullable)
    if f.struct is not None:
        codec = compile_struct(f.struct, version, flexible, views)
        return _nullable_struct(codec) if nullable else codec
    return _primitive(kind, flexible, nullable, views)


def _primitive(kind: str, flexible: bool, nullable: bool, views: bool) -> tuple[Reader, Writer]:
    if kind in _FIXED:
        return _FIXED[kind]
    if kind == "bool":
        return _read_bool, _write_bool
    if kind == "uuid":
        return _read_uuid, _write_uuid
    if kind in ("string", "bytes"):
        return _blob(kind, flexible, nullable)
    if kind == "records":  # only record sets are read as views: other bytes fields get kept
        return _blob("bytes", flexible, nullable, view=views)
    raise TypeError(f"unknown field type {kind!r}")


_COMPILED: dict[tuple[Any, int, bool, bool], tuple[Reader, Writer]] = {}


def compile_struct(cls: Any, version: int, flexible: bool, views: bool = False) -> tuple[Reader, Writer]:
    """A reader and a writer of `cls` at `version`, with or without flexible encoding (cached);
    with `views`, the reader returns records fields as memoryviews of the buffer."""
    key = (cls, version, flexible, views)
    compiled = _COMPILED.get(key)
    if compiled is None:
        compiled = _COMPILED[key] = _compile_struct(cls, version, flexible, views)
    return compiled


def _compile_struct(cls: Any, version: int, flexible: bool, views: bool) -> tuple[Reader, Writer]:
    regular: list[tuple[str, Reader, Writer]] = []
    tagged: dict[int, tuple[str, Reader, Writer, Any]] = {}
    defaults = cls()
    for f in cls.SCHEMA:
        if not in_range(version, f.versions):
            continue
        read, write = _field_codec(f, version, flexible, views)
        if flexible and in_range(version, f.tagged):
            assert f.tag is not None
            tagged[f.tag] = (f.name, read, write, getattr(defaults, f.name))
        else:
            regular.append((f.name, read, write))
    tagged_in_order = sorted(tagged.items())

    def read_struct(buf: Buf, pos: int) -> tuple[Any, int]:
        values: dict[str, Any] = {}
        for name, read, _ in regular:
            values[name], pos = read(buf, pos)
        if flexible:
            count, pos = read_uvarint(buf, pos)
            for _ in range(count):
                tag, pos = read_uvarint(buf, pos)
                size, pos = read_uvarint(buf, pos)
                end = pos + size
                if end > len(buf):
                    raise DecodeError("truncated tagged field")
                known = tagged.get(tag)
                if known is not None:
                    values[known[0]], used = known[1](buf[:end], pos)
                    if used != end:
                        raise DecodeError(f"tagged field {tag} has the wrong size")
                pos = end
        return cls(**values), pos

    def write_struct(out: bytearray, obj: Any) -> None:
        for name, _, write in regular:
            write(out, getattr(obj, name))
        if flexible:
            present = []
            for tag, (name, _, write, default) in tagged_in_order:
                value = getattr(obj, name)
                if value != default:
                    data = bytearray()
                    write(data, value)
                    present.append((tag, data))
            write_uvarint(out, len(present))
            for tag, data in present:
                write_uvarint(out, tag)
                write_uvarint(out, len(data))
                out += data

    return read_struct, write_struct


def is_flexible(cls: Any, version: int) -> bool:
    return in_range(version, cls.FLEXIBLE_VERSIONS)


# Blobs this large (record sets) are not copied into the output buffer but passed on by
# reference, so that a fetch response goes from the log read to the socket with no extra copy.
BIG_BLOB = 16 * 1024


class Sink(bytearray):
    """An output buffer that keeps big blobs aside as separate parts, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[bytes] = []

    def split_off(self, blob: bytes) -> None:
        if self:
            self.parts.append(bytes(self))
            self.clear()
        self.parts.append(blob)

    def finish(self) -> list[bytes]:
        """All the bytes written, as a list of parts to send with writelines()."""
        if self:
            self.parts.append(bytes(self))
            self.clear()
        return self.parts


def encode_parts(obj: Any, version: int) -> list[bytes]:
    """Serialize like `encode`, as parts that keep big blobs uncopied."""
    sink = Sink()
    encode_into(sink, obj, version)
    return sink.finish()


def encode(obj: Any, version: int) -> bytes:
    """Serialize a top-level message (request, response or header) at `version`."""
    return b"".join(encode_parts(obj, version))


def encode_into(out: bytearray, obj: Any, version: int) -> None:
    cls = type(obj)
    compile_struct(cls, version, is_flexible(cls, version))[1](out, obj)


def decode(cls: type[T], version: int, buf: Buf, pos: int = 0, *, views: bool = False) -> tuple[T, int]:
    """Parse a top-level message of `cls` at `version` from buf[pos:]; return it and the end.

    views: records fields become memoryviews of `buf` instead of copies (writable if buf is a
    bytearray). For the broker's request path, where the frame belongs to the one request;
    anything kept beyond the request must copy them (bytes(...))."""
    reader = compile_struct(cls, version, is_flexible(cls, version), views)[0]
    try:
        return reader(buf, pos)
    except DecodeError:
        raise
    except (struct.error, IndexError, ValueError, TypeError) as exc:
        raise DecodeError(str(exc)) from exc
