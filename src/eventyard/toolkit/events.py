"""Typed events: frozen dataclasses with a type name and a schema version, and their registry.

    class AddedItemToCart(Event, name="cart.item_added", version=2):
        cart_id: str
        sku: str
        quantity: int

A record carries the payload (JSON by default) as its value, and the type name, the schema version
and the content type as headers, so consumers that know nothing of Python can still route it."""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Protocol, dataclass_transform

from eventyard.toolkit.errors import InvalidEventPayload, UnknownEventType
from eventyard.toolkit.payload import PayloadError, from_plain, to_plain

HEADER_TYPE = "event-type"
HEADER_VERSION = "event-version"
HEADER_CONTENT_TYPE = "content-type"

Headers = list[tuple[str, str | bytes | None]]  # what confluent-kafka's produce() takes
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass_transform(frozen_default=True, kw_only_default=True)
class Event:
    """Base class of events. A subclass with a `name` is a concrete event type; without, a shared base."""

    event_type: ClassVar[str]
    event_version: ClassVar[int]

    def __init_subclass__(cls, *, name: str | None = None, version: int = 1, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if version < 1:
            raise ValueError(f"{cls.__name__}: schema versions start at 1")
        if name is not None:
            cls.event_type = name
            cls.event_version = version
        own = inspect.get_annotations(cls)
        if cls.__module__ not in sys.modules and any(isinstance(a, str) for a in own.values()):
            # Code run by exec() under a made-up module name (doc runners, notebooks): dataclasses
            # and get_type_hints find no module to resolve string annotations in, so do it here.
            scope = sys._getframe(1).f_globals
            cls.__annotations__ = {k: eval(a, scope) if isinstance(a, str) else a for k, a in own.items()}
        dataclass(frozen=True, kw_only=True)(cls)


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as it sits in the log: whose (the record key), where and when."""

    event: Event
    entity_id: str
    topic: str
    partition: int
    offset: int
    timestamp: datetime


class Serializer(Protocol):
    content_type: str

    def dumps(self, data: dict[str, Any]) -> bytes: ...

    def loads(self, raw: bytes) -> object: ...


class JsonSerializer:
    content_type = "application/json"

    def dumps(self, data: dict[str, Any]) -> bytes:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()

    def loads(self, raw: bytes) -> object:
        return json.loads(raw)


class EventRegistry:
    """The event types an application reads and writes, and the upcasters of their old versions."""

    def __init__(self, *types: type[Event], serializer: Serializer | None = None) -> None:
        self.serializer: Serializer = serializer or JsonSerializer()
        self._types: dict[str, type[Event]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        self.register(*types)

    def register(self, *types: type[Event]) -> None:
        for cls in types:
            name = getattr(cls, "event_type", None)
            if name is None:
                raise TypeError(f"{cls.__name__} has no event type name: declare it with name=...")
            if self._types.setdefault(name, cls) is not cls:
                raise ValueError(f"event type {name!r} is already registered by {self._types[name].__name__}")

    def upcaster(self, name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register a function turning the payload of version n into the payload of version n + 1."""

        def register(function: Upcaster) -> Upcaster:
            if (name, from_version) in self._upcasters:
                raise ValueError(f"{name!r} already has an upcaster from version {from_version}")
            self._upcasters[name, from_version] = function
            return function

        return register

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def encode(self, event: Event) -> tuple[bytes, Headers]:
        cls = type(event)
        if self._types.get(getattr(cls, "event_type", "")) is not cls:
            raise UnknownEventType(getattr(cls, "event_type", cls.__name__), detail="not in this registry")
        headers: Headers = [
            (HEADER_TYPE, cls.event_type.encode()),
            (HEADER_VERSION, str(cls.event_version).encode()),
            (HEADER_CONTENT_TYPE, self.serializer.content_type.encode()),
        ]
        return self.serializer.dumps(to_plain(event)), headers

    def decode(self, headers: Sequence[tuple[str, str | bytes | None]] | None, value: bytes | None) -> Event:
        """The event of a record; UnknownEventType or InvalidEventPayload if it cannot be read."""
        found = {
            k: v if isinstance(v, str) else v.decode(errors="replace")
            for k, v in headers or ()
            if v is not None
        }
        name = found.get(HEADER_TYPE)
        if name is None:
            raise UnknownEventType(None)
        try:
            version = int(found.get(HEADER_VERSION, "1"))
        except ValueError:
            raise InvalidEventPayload(name, f"bad {HEADER_VERSION} header") from None
        content_type = found.get(HEADER_CONTENT_TYPE, self.serializer.content_type)
        return self.decode_payload(name, version, content_type, value)

    def decode_payload(self, name: str, version: int, content_type: str, value: bytes | None) -> Event:
        cls = self._types.get(name)
        if cls is None or version > cls.event_version:
            raise UnknownEventType(name, version, "written by a newer schema" if cls else "")
        if content_type != self.serializer.content_type:
            raise InvalidEventPayload(
                name, f"content type {content_type!r}, expected {self.serializer.content_type!r}"
            )
        if value is None:
            raise InvalidEventPayload(name, "the record has no value")
        try:
            data = self.serializer.loads(value)
        except ValueError as error:
            raise InvalidEventPayload(name, f"not {content_type}: {error}") from None
        for old in range(version, cls.event_version):
            upcast = self._upcasters.get((name, old))
            if upcast is None:
                raise InvalidEventPayload(name, f"no upcaster from version {old} to {old + 1}")
            if not isinstance(data, dict):
                raise InvalidEventPayload(name, "payload is not an object")
            data = upcast(data)
        try:
            return from_plain(cls, data)
        except PayloadError as error:
            raise InvalidEventPayload(name, str(error)) from None
