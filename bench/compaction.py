"""Compaction throughput of the file engine: records cleaned per second, per codec.

    python bench/compaction.py [--records 200000] [--keys 1000] [--runs 3]

Each run writes the records (10 per batch, keys drawn at random, 1 MiB segments), rolls the
active segment, and times one forced compaction; the median per codec is printed.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time

from eventyard.protocol.records import CODECS, Record, build_batch, split_batches
from eventyard.storage.base import CompactionConfig, LogConfig
from eventyard.storage.file_log import FileStorageEngine


def run(records: int, keys: int, codec: int) -> tuple[float, int, int]:
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as data:
        engine = FileStorageEngine(data)
        log = engine.open_log("bench", 0, LogConfig(segment_bytes=1 << 20))
        now = int(time.time() * 1000)
        for start in range(0, records, 10):
            batch = build_batch(
                [
                    Record(b"key-%d" % rng.randrange(keys), b"value-%d-" % (start + i) + b"x" * 50)
                    for i in range(10)
                ],
                compression=codec,
            )
            log.append(bytearray(batch), split_batches(batch), now)
        log.roll_if_due(LogConfig(segment_ms=0), now + 1)  # everything written is now cleanable
        began = time.perf_counter()
        stats = log.compact(CompactionConfig(force=True), now + 2)
        elapsed = time.perf_counter() - began
        engine.close()
        return stats.records_read / elapsed, stats.bytes_before, stats.bytes_after


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--keys", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"# {args.records:,} records over {args.keys:,} keys, median of {args.runs} runs")
    print(f"{'codec':<8} {'records/s':>12} {'before MB':>10} {'after MB':>9}")
    for codec, name in CODECS.items():
        results = [run(args.records, args.keys, codec) for _ in range(args.runs)]
        rate = statistics.median(r[0] for r in results)
        before, after = results[0][1], results[0][2]
        print(f"{name:<8} {rate:>12,.0f} {before / 1e6:>10.1f} {after / 1e6:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
