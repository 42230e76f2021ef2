"""Our generated codec against kio (https://pypi.org/project/kio/), on the messages a broker handles most.

    pip install kio==0.6.5 && python bench/codec_compare.py

Each message is built with our classes and encoded once; then both libraries decode those same
bytes and encode their decoded objects back, and the median time per operation is printed with
the ratio kio/ours (above 1: ours is faster).
"""

from __future__ import annotations

import io
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from eventyard.protocol import codec
from eventyard.protocol.messages import fetch_response as fr
from eventyard.protocol.messages import metadata_response as mr
from eventyard.protocol.messages import produce_request as pr


def timeit(fn: Callable[[], Any], repeat: int = 7, number: int = 50) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - start) / number)
    return statistics.median(samples)


def cases() -> list[tuple[str, Any, int, str, str]]:
    produce = pr.ProduceRequest(
        acks=-1,
        timeout_ms=30000,
        topic_data=[
            pr.TopicProduceData(
                name="orders",
                partition_data=[pr.PartitionProduceData(index=i, records=b"r" * 300_000) for i in range(3)],
            )
        ],
    )
    metadata = mr.MetadataResponse(
        brokers=[mr.MetadataResponseBroker(node_id=1, host="localhost", port=9092)],
        cluster_id="cluster",
        controller_id=1,
        topics=[
            mr.MetadataResponseTopic(
                name=f"topic-{t}",
                topic_id=uuid.uuid4(),
                partitions=[
                    mr.MetadataResponsePartition(
                        partition_index=p, leader_id=1, replica_nodes=[1], isr_nodes=[1]
                    )
                    for p in range(10)
                ],
            )
            for t in range(200)
        ],
    )
    fetch = fr.FetchResponse(
        responses=[
            fr.FetchableTopicResponse(
                topic="orders",
                partitions=[
                    fr.PartitionData(
                        partition_index=p, high_watermark=10, last_stable_offset=10, records=b"x" * 100_000
                    )
                    for p in range(10)
                ],
            )
        ]
    )
    return [
        ("Produce v9 request (3 x 300 KB)", produce, 9, "produce", "request"),
        ("Metadata v12 response (200 topics x 10 partitions)", metadata, 12, "metadata", "response"),
        ("Fetch v12 response (10 x 100 KB)", fetch, 12, "fetch", "response"),
    ]


def main() -> None:
    try:
        from kio.serial import entity_reader, entity_writer
    except ImportError:
        raise SystemExit("kio is not installed: pip install kio==0.6.5") from None
    import importlib

    print(f"{'message':<52} {'op':<7} {'ours µs':>9} {'kio µs':>9} {'kio/ours':>9}")
    for name, obj, version, module, kind in cases():
        data = codec.encode(obj, version)
        kio_module = importlib.import_module(f"kio.schema.{module}.v{version}.{kind}")
        kio_cls = getattr(kio_module, type(obj).__name__)
        read_kio = entity_reader(kio_cls)
        write_kio = entity_writer(kio_cls)
        kio_obj, _ = read_kio(data, 0)
        assert len(data) > 0

        def kio_encode(obj: Any = kio_obj, write: Any = write_kio) -> bytes:
            buffer = io.BytesIO()
            write(buffer, obj)
            return buffer.getvalue()

        assert kio_encode() == data, f"kio and our codec disagree on {name}"
        ours_decode = timeit(lambda: codec.decode(type(obj), version, data))  # noqa: B023
        kio_decode = timeit(lambda: read_kio(data, 0))  # noqa: B023
        ours_encode = timeit(lambda: codec.encode(obj, version))  # noqa: B023
        kio_enc = timeit(kio_encode)
        for op, ours, theirs in (("decode", ours_decode, kio_decode), ("encode", ours_encode, kio_enc)):
            print(f"{name:<52} {op:<7} {ours * 1e6:>9.1f} {theirs * 1e6:>9.1f} {theirs / ours:>9.2f}")


if __name__ == "__main__":
    main()
