"""Typed events: round trips through a real broker, the typed errors, upcasting."""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import pytest
from confluent_kafka import Producer

from eventyard.toolkit import (
    Event,
    EventPublisher,
    EventRegistry,
    InvalidEventPayload,
    Record,
    UnknownEventType,
)
from eventyard.toolkit.events import HEADER_TYPE, HEADER_VERSION
from examples.cart.domain import AddedItemToCart, RemovedItemFromCart, events


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Line(Event):  # no name: a plain nested value, not an event type
    sku: str
    price: Decimal


class OrderPlaced(Event, name="shop.order_placed", version=3):
    order_id: str
    placed_at: datetime
    lines: list[Line]
    colour: Colour
    note: str | None = None
    priority: Literal["low", "high"] = "low"
    tags: dict[str, int] | None = None


def headers(name: str, version: int) -> list[tuple[str, str | bytes | None]]:
    return [(HEADER_TYPE, name.encode()), (HEADER_VERSION, str(version).encode())]


def test_events_round_trip_through_the_broker(
    eventyard_bootstrap: str, eventyard_topic: str, eventyard_records: Callable[[str], list[Record]]
) -> None:
    registry = EventRegistry(OrderPlaced)
    order = OrderPlaced(
        order_id="o-1",
        placed_at=datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
        lines=[Line(sku="socks", price=Decimal("4.99"))],
        colour=Colour.BLUE,
        tags={"gift": 1},
    )
    with EventPublisher(eventyard_bootstrap, registry, transactions=False) as publisher:
        [delivery] = publisher.publish(eventyard_topic, "o-1", [order])
    [record] = eventyard_records(eventyard_topic)
    assert (record.partition, record.offset, record.key) == (delivery.partition, delivery.offset, b"o-1")
    assert dict(record.headers) == {
        "event-type": b"shop.order_placed",
        "event-version": b"3",
        "content-type": b"application/json",
    }
    assert json.loads(record.value or b"")["lines"] == [{"sku": "socks", "price": "4.99"}]
    assert registry.decode(record.headers, record.value) == order


def test_events_are_frozen_keyword_only_dataclasses() -> None:
    added = AddedItemToCart(cart_id="c", sku="socks", quantity=2)
    with pytest.raises(AttributeError):
        added.quantity = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        AddedItemToCart("c", "socks", 2)  # type: ignore[call-arg]
    assert (AddedItemToCart.event_type, AddedItemToCart.event_version) == ("cart.item_added", 2)


def test_unknown_event_type() -> None:
    with pytest.raises(UnknownEventType) as error:
        events.decode(headers("cart.checked_out", 1), b"{}")
    assert error.value.name == "cart.checked_out"
    with pytest.raises(UnknownEventType, match="without an event type header"):
        events.decode([], b"{}")
    with pytest.raises(UnknownEventType, match="newer schema"):
        events.decode(headers("cart.item_added", 3), b"{}")
    with pytest.raises(UnknownEventType, match="not in this registry"):
        EventRegistry(RemovedItemFromCart).encode(AddedItemToCart(cart_id="c", sku="s", quantity=1))


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "not application/json"),
        (b"[1, 2]", "payload: expected an object, got an array"),
        (b'{"cart_id": "c", "sku": "s"}', "quantity: missing"),
        (b'{"cart_id": "c", "sku": "s", "quantity": "2"}', "quantity: expected int, got a string"),
        (b'{"cart_id": "c", "sku": "s", "quantity": true}', "quantity: expected int, got a boolean"),
        (b'{"cart_id": "c", "sku": "s", "quantity": 2, "price": 3}', "unexpected field(s) price"),
        (b'{"cart_id": null, "sku": "s", "quantity": 2}', "cart_id: expected str, got null"),
    ],
)
def test_invalid_payloads_say_why(payload: bytes, reason: str) -> None:
    with pytest.raises(InvalidEventPayload) as error:
        events.decode(headers("cart.item_added", 2), payload)
    assert error.value.name == "cart.item_added"
    assert reason in error.value.reason


def test_invalid_nested_values_give_their_path() -> None:
    registry = EventRegistry(OrderPlaced)
    good: dict[str, Any] = {
        "order_id": "o",
        "placed_at": "2024-05-01T12:30:00+00:00",
        "lines": [{"sku": "a", "price": "1.50"}],
        "colour": "red",
    }
    assert registry.decode(headers("shop.order_placed", 3), json.dumps(good).encode()) == OrderPlaced(
        order_id="o",
        placed_at=datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
        lines=[Line(sku="a", price=Decimal("1.50"))],
        colour=Colour.RED,
    )
    changes: list[tuple[dict[str, Any], str]] = [
        ({"lines": [{"sku": "a", "price": "cheap"}]}, "lines[0].price: 'cheap' is not a decimal"),
        ({"colour": "green"}, "colour: 'green' is not a Colour"),
        ({"placed_at": "yesterday"}, "placed_at: 'yesterday' is not an ISO 8601 date-time"),
        ({"priority": "urgent"}, "priority: 'urgent' is not one of ['low', 'high']"),
        ({"tags": {"gift": "yes"}}, "tags['gift']: expected int, got a string"),
    ]
    for change, reason in changes:
        with pytest.raises(InvalidEventPayload) as error:
            registry.decode(headers("shop.order_placed", 3), json.dumps({**good, **change}).encode())
        assert reason in error.value.reason, error.value.reason


def test_upcasting_keeps_old_events_readable(eventyard_bootstrap: str, eventyard_topic: str) -> None:
    # A version 1 record, as the code of last year wrote it: no quantity.
    producer = Producer({"bootstrap.servers": eventyard_bootstrap})
    producer.produce(
        eventyard_topic, b'{"cart_id": "c", "sku": "socks"}', b"c", headers=headers("cart.item_added", 1)
    )
    producer.flush(10)
    from eventyard.toolkit import read_topic

    [record] = read_topic(eventyard_bootstrap, eventyard_topic)
    assert events.decode(record.headers, record.value) == AddedItemToCart(
        cart_id="c", sku="socks", quantity=1
    )


def test_upcasters_chain_and_must_not_be_missing() -> None:
    class Renamed(Event, name="thing.renamed", version=3):
        name: str
        by: str

    registry = EventRegistry(Renamed)

    @registry.upcaster("thing.renamed", from_version=1)
    def v1(payload: dict[str, Any]) -> dict[str, Any]:
        return {"title": payload["title"]}

    with pytest.raises(InvalidEventPayload, match="no upcaster from version 2 to 3"):
        registry.decode(headers("thing.renamed", 1), b'{"title": "x"}')

    @registry.upcaster("thing.renamed", from_version=2)
    def v2(payload: dict[str, Any]) -> dict[str, Any]:
        return {"name": payload["title"], "by": "unknown"}

    assert registry.decode(headers("thing.renamed", 1), b'{"title": "x"}') == Renamed(name="x", by="unknown")
    assert registry.decode(headers("thing.renamed", 3), b'{"name": "y", "by": "me"}') == Renamed(
        name="y", by="me"
    )
    with pytest.raises(ValueError, match="already has an upcaster"):
        registry.upcaster("thing.renamed", from_version=2)(v2)


def test_registry_refuses_two_classes_for_one_name() -> None:
    class Other(Event, name="cart.item_added"):
        x: int

    with pytest.raises(ValueError, match="already registered"):
        EventRegistry(AddedItemToCart, Other)
    with pytest.raises(TypeError, match="no event type name"):
        EventRegistry(Line)
