"""Record batches (message format v2), handled as opaque bytes on the hot path.

Layout of the 61-byte batch header, big-endian:

    baseOffset int64 | batchLength int32 | partitionLeaderEpoch int32 | magic int8 |
    crc uint32 | attributes int16 | lastOffsetDelta int32 | baseTimestamp int64 |
    maxTimestamp int64 | producerId int64 | producerEpoch int16 | baseSequence int32 |
    recordCount int32

batchLength counts the bytes after itself; the CRC-32C covers attributes to the end. The broker
checks a batch and rewrites its base offset; it never decodes the records on the hot path.
Decoding and building records (`decode_records`, `build_batch`) serve tests, compaction and
tools.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import crc32c

Buffer = bytes | bytearray | memoryview

HEADER_SIZE = 61
LOG_OVERHEAD = 12  # baseOffset + batchLength: the bytes not counted in batchLength
MAGIC_V2 = 2

HEADER_STRUCT = struct.Struct(">qiibIhiqqqhii")
_BASE_OFFSET = struct.Struct(">q")
_PREFIX = struct.Struct(">qi")

# attributes bits
COMPRESSION_MASK = 0x07
TIMESTAMP_TYPE_LOG_APPEND = 0x08
TRANSACTIONAL = 0x10
CONTROL = 0x20

CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


class InvalidBatch(ValueError):
    """The bytes are not a valid v2 record batch; `error` names the protocol error to answer."""

    def __init__(self, message: str, error: str = "CORRUPT_MESSAGE") -> None:
        super().__init__(message)
        self.error = error


@dataclass(frozen=True, slots=True)
class BatchHeader:
    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def size(self) -> int:
        """Bytes the whole batch takes, header included."""
        return self.batch_length + LOG_OVERHEAD

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def compression(self) -> int:
        return self.attributes & COMPRESSION_MASK

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL)

    @property
    def last_sequence(self) -> int:
        if self.base_sequence < 0:
            return -1
        return (self.base_sequence + self.last_offset_delta) & 0x7FFFFFFF


def read_header(buf: Buffer, pos: int = 0) -> BatchHeader:
    return BatchHeader(*HEADER_STRUCT.unpack_from(buf, pos))


def peek_size(buf: Buffer, pos: int) -> int | None:
    """Size of the batch starting at pos, or None if not even its length is in buf."""
    if pos + LOG_OVERHEAD > len(buf):
        return None
    return int(_PREFIX.unpack_from(buf, pos)[1]) + LOG_OVERHEAD


def crc_of(buf: Buffer, pos: int, size: int) -> int:
    return int(crc32c.crc32c(memoryview(buf)[pos + 21 : pos + size]))


def split_batches(data: Buffer, max_batch_bytes: int | None = None) -> list[tuple[int, BatchHeader]]:
    """Validate the record set of a produce request: (position, header) of each batch.

    Checks sizes, magic, CRC-32C and offset fields; raises InvalidBatch otherwise.
    """
    batches = []
    pos = 0
    end = len(data)
    if end == 0:
        raise InvalidBatch("empty record set")
    while pos < end:
        if end - pos < HEADER_SIZE:
            raise InvalidBatch("truncated record batch header", "INVALID_RECORD")
        header = read_header(data, pos)
        if header.magic != MAGIC_V2:
            raise InvalidBatch(f"unsupported message format magic {header.magic}", "UNSUPPORTED_VERSION")
        size = header.size
        if header.batch_length < HEADER_SIZE - LOG_OVERHEAD or pos + size > end:
            raise InvalidBatch("record batch length does not match the data", "INVALID_RECORD")
        if max_batch_bytes is not None and size > max_batch_bytes:
            raise InvalidBatch(f"record batch of {size} bytes is too large", "MESSAGE_TOO_LARGE")
        if header.record_count <= 0 or header.last_offset_delta != header.record_count - 1:
            raise InvalidBatch("record count does not match lastOffsetDelta", "INVALID_RECORD")
        if crc_of(data, pos, size) != header.crc:
            raise InvalidBatch("record batch CRC-32C mismatch")
        batches.append((pos, header))
        pos += size
    return batches


def set_base_offset(batch: bytearray | memoryview, pos: int, base_offset: int) -> None:
    """Assign offsets: the base offset is outside the CRC, so no checksum changes."""
    _BASE_OFFSET.pack_into(batch, pos, base_offset)


def set_max_timestamp(batch: bytearray | memoryview, pos: int, timestamp: int) -> None:
    """LogAppendTime: stamp the batch and recompute the CRC (the field is inside it)."""
    attributes = struct.unpack_from(">h", batch, pos + 21)[0] | TIMESTAMP_TYPE_LOG_APPEND
    struct.pack_into(">h", batch, pos + 21, attributes)
    struct.pack_into(">q", batch, pos + 35, timestamp)
    size = int(_PREFIX.unpack_from(batch, pos)[1]) + LOG_OVERHEAD
    struct.pack_into(">I", batch, pos + 17, crc_of(batch, pos, size))


def iter_batches(buf: Buffer, pos: int = 0) -> Iterator[tuple[int, BatchHeader]]:
    """Walk whole batches in buf from pos; stop at a partial trailing batch."""
    end = len(buf)
    while pos + HEADER_SIZE <= end:
        header = read_header(buf, pos)
        if pos + header.size > end or header.batch_length < HEADER_SIZE - LOG_OVERHEAD:
            return
        yield pos, header
        pos += header.size


# --- records inside a batch: for tests, compaction and tools, never the hot path ---------


def _zigzag(value: int) -> int:
    return (value << 1) ^ (value >> 63)


def _write_varint(out: bytearray, value: int) -> None:
    v = _zigzag(value) & 0xFFFFFFFFFFFFFFFF
    while v > 0x7F:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
        if shift > 63:
            raise InvalidBatch("varint too long")
    return (result >> 1) ^ -(result & 1), pos


@dataclass(slots=True)
class Record:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    timestamp: int = 0
    offset: int = 0


def compress(codec: int, data: bytes) -> bytes:
    import cramjam

    if codec == 0:
        return data
    if codec == 1:
        return bytes(cramjam.gzip.compress(data))
    if codec == 2:
        return bytes(cramjam.snappy.compress_raw(data))
    if codec == 3:
        return bytes(cramjam.lz4.compress(data))
    if codec == 4:
        return bytes(cramjam.zstd.compress(data))
    raise InvalidBatch(f"unknown compression codec {codec}")


def decompress(codec: int, data: bytes) -> bytes:
    import cramjam

    if codec == 0:
        return data
    if codec == 1:
        return bytes(cramjam.gzip.decompress(data))
    if codec == 2:
        if data[:8] == b"\x82SNAPPY\x00":  # xerial framing, as the Java client writes it
            out = bytearray()
            pos = 16
            while pos < len(data):
                (n,) = struct.unpack_from(">i", data, pos)
                out += bytes(cramjam.snappy.decompress_raw(data[pos + 4 : pos + 4 + n]))
                pos += 4 + n
            return bytes(out)
        return bytes(cramjam.snappy.decompress_raw(data))
    if codec == 3:
        return bytes(cramjam.lz4.decompress(data))
    if codec == 4:
        return bytes(cramjam.zstd.decompress(data))
    raise InvalidBatch(f"unknown compression codec {codec}")


def build_batch(
    records: Sequence[Record],
    *,
    base_offset: int = 0,
    compression: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    base_timestamp: int | None = None,
    transactional: bool = False,
) -> bytes:
    """Encode records as one v2 batch; record offsets are taken relative to base_offset."""
    if base_timestamp is None:
        base_timestamp = records[0].timestamp if records and records[0].timestamp else int(time.time() * 1000)
    body = bytearray()
    max_ts = base_timestamp
    last_delta = 0
    for i, rec in enumerate(records):
        ts = rec.timestamp or base_timestamp
        max_ts = max(max_ts, ts)
        delta = (rec.offset - base_offset) if rec.offset else i
        last_delta = max(last_delta, delta)
        r = bytearray([0])  # attributes
        _write_varint(r, ts - base_timestamp)
        _write_varint(r, delta)
        for part in (rec.key, rec.value):
            if part is None:
                _write_varint(r, -1)
            else:
                _write_varint(r, len(part))
                r += part
        _write_varint(r, len(rec.headers))
        for hkey, hval in rec.headers:
            kb = hkey.encode()
            _write_varint(r, len(kb))
            r += kb
            if hval is None:
                _write_varint(r, -1)
            else:
                _write_varint(r, len(hval))
                r += hval
        _write_varint(body, len(r))
        body += r
    payload = compress(compression, bytes(body))
    attributes = compression | (TRANSACTIONAL if transactional else 0)
    batch_length = HEADER_SIZE - LOG_OVERHEAD + len(payload)
    out = bytearray(
        HEADER_STRUCT.pack(
            base_offset,
            batch_length,
            -1,
            MAGIC_V2,
            0,
            attributes,
            last_delta,
            base_timestamp,
            max_ts,
            producer_id,
            producer_epoch,
            base_sequence,
            len(records),
        )
    )
    out += payload
    struct.pack_into(">I", out, 17, crc_of(out, 0, len(out)))
    return bytes(out)


def decode_records(batch: Buffer, pos: int = 0) -> list[Record]:
    """Decode every record of the batch at pos (decompressing it) with absolute offsets."""
    header = read_header(batch, pos)
    try:
        payload = decompress(header.compression, bytes(batch[pos + HEADER_SIZE : pos + header.size]))
    except InvalidBatch:
        raise
    except Exception as exc:  # each codec library raises its own error types
        raise InvalidBatch(f"cannot decompress a {CODECS.get(header.compression)} batch: {exc}") from exc
    out = []
    p = 0
    try:
        for _ in range(header.record_count):
            length, p = read_varint(payload, p)
            end = p + length
            p += 1  # attributes
            ts_delta, p = read_varint(payload, p)
            off_delta, p = read_varint(payload, p)
            parts: list[bytes | None] = []
            for _part in range(2):
                n, p = read_varint(payload, p)
                if n < 0:
                    parts.append(None)
                else:
                    parts.append(payload[p : p + n])
                    p += n
            count, p = read_varint(payload, p)
            headers: list[tuple[str, bytes | None]] = []
            for _h in range(count):
                n, p = read_varint(payload, p)
                hkey = payload[p : p + n].decode()
                p += n
                n, p = read_varint(payload, p)
                hval = None if n < 0 else payload[p : p + n]
                p += max(n, 0)
                headers.append((hkey, hval))
            out.append(
                Record(
                    parts[0],
                    parts[1],
                    headers,
                    header.base_timestamp + ts_delta,
                    header.base_offset + off_delta,
                )
            )
            p = end
    except (IndexError, UnicodeDecodeError) as exc:
        raise InvalidBatch(f"malformed records: {exc}") from exc
    return out
