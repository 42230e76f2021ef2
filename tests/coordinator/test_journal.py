"""The consumer-group journal (eventyard.broker.journal): records on disk, replay and compaction."""

from __future__ import annotations

import json
from pathlib import Path

import crc32c
import pytest

from eventyard.broker import journal as journal_module
from eventyard.broker.journal import CurrentState, Journal, decode, encode
from eventyard.coordinator.group import GroupCoordinator
from eventyard.coordinator.group_state import (
    GroupDeleted,
    GroupMetadata,
    OffsetCommitted,
    OffsetDeleted,
    Record,
)


def commit(group: str, topic: str, partition: int, offset: int, metadata: str = "") -> OffsetCommitted:
    return OffsetCommitted(group, topic, partition, offset, 7, metadata, 1_700_000_000_000 + offset)


def stable(group: str, generation: int, *members: str) -> GroupMetadata:
    return GroupMetadata(
        group_id=group,
        protocol_type="consumer",
        protocol_name="range",
        generation=generation,
        state="Stable",
        leader_id=members[0] if members else None,
        member_ids=tuple(members),
        timestamp_ms=1_700_000_000_000 + generation,
    )


def reopen(path: Path) -> tuple[Journal, list[Record]]:
    journal = Journal(path)
    return journal, journal.open()


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


SAMPLES: list[Record] = [
    commit("g1", "orders", 0, 42, "checkpoint ✓"),
    OffsetDeleted("g1", "orders", 1),
    stable("g1", 3, "m-1", "m-2"),
    GroupMetadata("g2", None, None, 0, "Empty", None, (), 5),
    GroupDeleted("g3"),
]


@pytest.mark.parametrize("record", SAMPLES, ids=lambda r: type(r).__name__)
def test_encode_decode_round_trip(record: Record) -> None:
    line = encode(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode(line) == record


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"\n",
        b"00000000 {}\n",  # wrong checksum
        b"zzzzzzzz " + encode(commit("g", "t", 0, 1))[9:],  # checksum is not hex
        encode(commit("g", "t", 0, 1))[:-1],  # no newline: torn
        encode(commit("g", "t", 0, 1))[:-5] + b"\n",  # truncated body
    ],
)
def test_decode_rejects_bad_lines(line: bytes) -> None:
    assert decode(line) is None


def test_decode_rejects_valid_checksum_over_unknown_or_incomplete_records() -> None:
    def framed(body: dict[str, object]) -> bytes:
        data = json.dumps(body).encode()
        return b"%08x " % crc32c.crc32c(data) + data + b"\n"

    assert decode(framed({"type": "Nonsense", "group_id": "g"})) is None
    assert decode(framed({"type": "OffsetCommitted", "group_id": "g"})) is None  # missing fields
    assert decode(framed({"group_id": "g"})) is None  # no type
    assert decode(framed({"type": "GroupDeleted", "group_id": "g"})) == GroupDeleted("g")


def test_records_round_trip_through_a_file(tmp_path: Path) -> None:
    path = tmp_path / "consumer-groups.journal"
    journal, replayed = reopen(path)
    assert replayed == []
    assert path.exists() and path.read_bytes() == b""
    written: list[Record] = [
        stable("g1", 1, "a"),
        commit("g1", "orders", 0, 10),
        commit("g1", "orders", 1, 20, "meta"),
        commit("g2", "payments", 0, 5),
        stable("g2", 4, "b", "c"),
    ]
    journal.append(written[:2])
    journal.append(written[2:])
    journal.append([])  # nothing to write is fine
    journal.close()
    assert [decode(line) for line in lines(path)] == written

    journal, replayed = reopen(path)
    journal.close()
    # Metadata first (one per group), then the offsets, in first-written order.
    assert replayed == [written[0], written[4], written[1], written[2], written[3]]
    assert sorted(map(repr, replayed)) == sorted(map(repr, written))


def test_appends_reach_the_file_before_flush(tmp_path: Path) -> None:
    """A SIGKILL after append must not lose the records: they are in the file, not in a buffer."""
    path = tmp_path / "j"
    journal, _ = reopen(path)
    journal.append([commit("g", "t", 0, 1)])
    assert journal.unflushed
    assert [decode(line) for line in lines(path)] == [commit("g", "t", 0, 1)]
    journal.flush()
    assert not journal.unflushed
    # Read back by another instance while the first one is still open, as after a crash.
    other, replayed = reopen(path)
    assert replayed == [commit("g", "t", 0, 1)]
    other.close()
    journal.close()


def test_torn_last_line_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal, _ = reopen(path)
    good: list[Record] = [commit("g", "t", p, 100 + p) for p in range(3)]
    journal.append(good)
    journal.close()
    torn = encode(commit("g", "t", 0, 999))
    with open(path, "ab") as f:
        f.write(torn[: len(torn) // 2])  # a crash in the middle of a write

    journal, replayed = reopen(path)
    assert replayed == good
    # The rewrite dropped the torn tail: the next append starts on a line of its own.
    journal.append([commit("g", "t", 1, 500)])
    journal.close()
    assert all(decode(line) is not None for line in lines(path))
    _, replayed = reopen(path)
    assert replayed == [good[0], commit("g", "t", 1, 500), good[2]]


def test_corrupted_line_is_dropped_and_the_rest_kept(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal, _ = reopen(path)
    records: list[Record] = [commit("g", "t", p, 10 * p) for p in range(5)]
    journal.append(records)
    journal.close()
    raw = lines(path)
    assert len(raw) == 5
    raw[2] = raw[2].replace(b'"offset":20', b'"offset":21')  # a flipped digit: the CRC no longer matches
    raw[3] = b"\x00" * (len(raw[3]) - 1) + b"\n"  # a zeroed block
    path.write_bytes(b"".join(raw))

    journal, replayed = reopen(path)
    journal.close()
    assert replayed == [records[0], records[1], records[4]]
    assert len(lines(path)) == 3


def test_replay_is_in_file_order_around_a_corrupt_line(tmp_path: Path) -> None:
    """Replay is in file order: a later valid commit wins over an earlier one, corrupt lines in
    between are skipped without changing that order."""
    path = tmp_path / "j"
    journal, _ = reopen(path)
    journal.append([commit("g", "t", 0, 1), commit("g", "t", 0, 2), commit("g", "t", 0, 3)])
    journal.close()
    raw = lines(path)
    raw[2] = raw[2][:-3] + b"x}\n"
    path.write_bytes(b"".join(raw))
    _, replayed = reopen(path)
    assert replayed == [commit("g", "t", 0, 2)]


def test_compaction_keeps_latest_offset_per_partition_and_drops_deleted_groups(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal, _ = reopen(path)
    for offset in range(1, 6):
        journal.append([commit("keep", "t", 0, offset), commit("keep", "t", 1, offset * 10)])
        journal.append([commit("keep", "u", 0, offset * 100), commit("gone", "t", 0, offset)])
    journal.append([stable("keep", 1, "m1"), stable("keep", 2, "m1", "m2"), stable("gone", 9, "x")])
    journal.append([commit("deleted-offset", "t", 0, 1), OffsetDeleted("deleted-offset", "t", 0)])
    journal.append([OffsetDeleted("gone", "t", 0), GroupDeleted("gone")])
    journal.append([OffsetDeleted("keep", "u", 0)])
    journal.append([GroupDeleted("never-existed")])
    journal.close()

    journal, replayed = reopen(path)
    journal.close()
    assert replayed == [
        stable("keep", 2, "m1", "m2"),
        commit("keep", "t", 0, 5),
        commit("keep", "t", 1, 50),
    ]
    assert [decode(line) for line in lines(path)] == replayed
    assert not list(path.parent.glob("*.tmp"))


def test_group_deleted_then_recreated_keeps_only_the_new_life(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal, _ = reopen(path)
    journal.append([stable("g", 5, "old"), commit("g", "t", 0, 500), commit("g", "t", 1, 600)])
    journal.append([GroupDeleted("g")])
    journal.append([commit("g", "t", 1, 7)])
    journal.close()
    _, replayed = reopen(path)
    assert replayed == [commit("g", "t", 1, 7)]


def test_reopened_journal_is_small_after_many_appends(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal, _ = reopen(path)
    for offset in range(5000):
        journal.append([commit("g", "t", offset % 4, offset), commit("h", "t", 0, offset)])
    journal.close()
    grown = path.stat().st_size
    assert len(lines(path)) == 10_000

    journal, replayed = reopen(path)
    assert len(replayed) == 5
    assert {(r.group_id, r.partition, r.offset) for r in replayed if isinstance(r, OffsetCommitted)} == {
        ("g", 0, 4996),
        ("g", 1, 4997),
        ("g", 2, 4998),
        ("g", 3, 4999),
        ("h", 0, 4999),
    }
    assert len(lines(path)) == 5
    assert path.stat().st_size < grown / 1000
    # It keeps appending after the compaction, and a further reopen is just as small.
    journal.append([commit("g", "t", 0, 5000)])
    journal.close()
    _, replayed = reopen(path)
    assert len(lines(path)) == 5
    assert commit("g", "t", 0, 5000) in replayed


def test_journal_compacts_itself_while_appending(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_module, "COMPACT_SLACK", 100)
    path = tmp_path / "j"
    journal, _ = reopen(path)
    longest = 0
    for offset in range(1000):
        journal.append([commit("g", "t", offset % 3, offset)])
        longest = max(longest, len(lines(path)))
    assert longest <= 3 + 100 + 1
    journal.close()
    _, replayed = reopen(path)
    assert [r.offset for r in replayed if isinstance(r, OffsetCommitted)] == [999, 997, 998]


def test_memory_journal_keeps_nothing(tmp_path: Path) -> None:
    journal = Journal(None)
    assert journal.open() == []
    journal.append([commit("g", "t", 0, 1)])
    journal.flush()
    journal.close()
    assert list(tmp_path.iterdir()) == []


def test_current_state_applies_records_in_order() -> None:
    state = CurrentState()
    applied: list[Record] = [
        commit("g", "t", 0, 1),
        stable("g", 1, "a"),
        commit("g", "t", 0, 2),
        OffsetDeleted("g", "t", 9),
    ]
    for r in applied:
        state.apply(r)
    assert state.records() == [stable("g", 1, "a"), commit("g", "t", 0, 2)]
    state.apply(GroupDeleted("g"))
    assert state.records() == []


def test_coordinator_replays_the_reopened_journal(tmp_path: Path) -> None:
    """What a restarted broker does with the journal: committed offsets come back exactly, the
    group comes back Empty with its generation, deleted groups stay deleted."""
    path = tmp_path / "j"
    journal, _ = reopen(path)
    journal.append([stable("g", 3, "m1"), commit("g", "t", 0, 10), commit("g", "t", 1, 11)])
    journal.append([commit("g", "t", 0, 12), commit("dead", "t", 0, 1), GroupDeleted("dead")])
    journal.close()

    journal, replayed = reopen(path)
    journal.close()
    coordinator = GroupCoordinator()
    for record in replayed:
        coordinator.replay(record, now_ms=2_000_000_000_000)
    assert set(coordinator.groups) == {"g"}
    group = coordinator.groups["g"]
    assert (group.state.value, group.generation) == ("Empty", 3)
    fetched = coordinator.fetch_offsets("g", None, now_ms=2_000_000_000_000).response
    assert [(f.topic, f.partition, f.offset, f.leader_epoch) for f in fetched] == [
        ("t", 0, 12, 7),
        ("t", 1, 11, 7),
    ]
