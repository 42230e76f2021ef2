"""EventPublisher: keyed like the Java client, acknowledged, idempotent, one batch per command."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from eventyard.protocol.messages import fetch_request as fq
from eventyard.protocol.records import iter_batches
from eventyard.testing import EmbeddedBroker
from eventyard.toolkit import (
    EventPublisher,
    EventRegistry,
    PublishError,
    UnknownEventType,
    ensure_topic,
    partition_for,
    read_topic,
    supports_transactions,
)
from eventyard.toolkit.kafka import murmur2
from eventyard.wire_client import WireClient
from examples.cart.domain import AddedItemToCart, ChangedItemQuantity, RemovedItemFromCart, events


def test_murmur2_matches_kafka_reference_values() -> None:
    # Values from Kafka's own UtilsTest (as signed ints there).
    assert murmur2(b"21") == -973932308 & 0xFFFFFFFF
    assert murmur2(b"foobar") == -790332482 & 0xFFFFFFFF
    assert murmur2(b"a-little-bit-long-string") == -985981536 & 0xFFFFFFFF
    assert murmur2(b"a-little-bit-longer-string") == -1486304829 & 0xFFFFFFFF
    assert murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") == -58897971 & 0xFFFFFFFF
    assert murmur2(b"abc") == 479470107


def test_keys_go_where_librdkafkas_murmur2_partitioner_puts_them(
    eventyard_bootstrap: str, eventyard_topic: str
) -> None:
    ensure_topic(eventyard_bootstrap, eventyard_topic, partitions=7)
    producer = Producer({"bootstrap.servers": eventyard_bootstrap, "partitioner": "murmur2"})
    keys = [f"cart-{i}" for i in range(60)]
    for key in keys:
        producer.produce(eventyard_topic, b"x", key.encode())
    assert producer.flush(10) == 0
    placed = {r.key.decode(): r.partition for r in read_topic(eventyard_bootstrap, eventyard_topic) if r.key}
    assert placed == {key: partition_for(key, 7) for key in keys}
    assert len(set(placed.values())) == 7


def test_one_command_is_one_acknowledged_idempotent_batch(
    eventyard_broker: EmbeddedBroker, eventyard_topic: str
) -> None:
    ensure_topic(eventyard_broker.bootstrap, eventyard_topic, partitions=3)
    command = [
        AddedItemToCart(cart_id="bob", sku="socks", quantity=2),
        ChangedItemQuantity(cart_id="bob", sku="socks", quantity=3),
        RemovedItemFromCart(cart_id="bob", sku="socks"),
    ]
    with EventPublisher(eventyard_broker.bootstrap, events, transactions=False) as publisher:
        assert publisher.settings["enable.idempotence"] is True
        assert publisher.settings["acks"] == "all"
        first = publisher.publish(eventyard_topic, "bob", command)
        second = publisher.publish(eventyard_topic, "bob", command[:1])
    partition = partition_for("bob", 3)
    assert [(d.partition, d.offset) for d in first + second] == [(partition, i) for i in range(4)]

    # The log itself: one record batch per publish, stamped with the idempotent producer's id.
    host, port = eventyard_broker.bootstrap.split(":")
    with WireClient(host, int(port)) as client:
        request = fq.FetchRequest(
            max_wait_ms=0,
            min_bytes=1,
            max_bytes=1_000_000,
            topics=[
                fq.FetchTopic(
                    topic=eventyard_topic,
                    partitions=[
                        fq.FetchPartition(partition=partition, fetch_offset=0, partition_max_bytes=1_000_000)
                    ],
                )
            ],
        )
        data = client.request(request, 12).responses[0].partitions[0].records
    batches = [header for _, header in iter_batches(data)]
    assert [(b.base_offset, b.record_count) for b in batches] == [(0, 3), (3, 1)]
    assert all(b.producer_id >= 0 and b.base_sequence >= 0 for b in batches)
    assert [b.base_sequence for b in batches] == [0, 3]


def test_our_broker_has_no_transactions_so_publishers_do_without(eventyard_bootstrap: str) -> None:
    assert supports_transactions(eventyard_bootstrap) is False
    with EventPublisher(eventyard_bootstrap, events) as publisher:  # detects
        assert publisher.transactional is False
        assert "transactional.id" not in publisher.settings


def test_an_event_outside_the_registry_is_refused_before_sending(
    eventyard_bootstrap: str, eventyard_topic: str
) -> None:
    publisher = EventPublisher(eventyard_bootstrap, EventRegistry(AddedItemToCart), transactions=False)
    command = [AddedItemToCart(cart_id="c", sku="s", quantity=1), RemovedItemFromCart(cart_id="c", sku="s")]
    with publisher, pytest.raises(UnknownEventType):
        publisher.publish(eventyard_topic, "c", command)
    assert (
        ensure_topic(eventyard_bootstrap, eventyard_topic)
        and read_topic(eventyard_bootstrap, eventyard_topic) == []
    )


def test_a_refused_produce_raises_publish_error(eventyard_bootstrap: str, eventyard_topic: str) -> None:
    with AdminClient({"bootstrap.servers": eventyard_bootstrap}) as admin:
        topic = NewTopic(eventyard_topic, num_partitions=1, config={"max.message.bytes": "200"})
        admin.create_topics([topic])[eventyard_topic].result(10)
    publisher = EventPublisher(eventyard_bootstrap, events, transactions=False, timeout=5)
    with publisher, pytest.raises(PublishError) as error:
        publisher.publish(eventyard_topic, "c", [AddedItemToCart(cart_id="c", sku="x" * 500, quantity=1)])
    assert "too large" in error.value.reason.lower()
    assert error.value.delivered == []
