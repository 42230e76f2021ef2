"""Dataclass <-> JSON-compatible values, checked against the type hints of the dataclass.

The check is strict on purpose: an event that does not match its declaration is refused when read,
with the path of the first bad field, instead of surfacing later as a wrong state."""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
import uuid
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

T = TypeVar("T")


class PayloadError(ValueError):
    """A value that does not fit its declared type; the message starts with the field's path."""


def to_plain(value: object) -> Any:
    """A dataclass instance (or any supported value) as JSON-compatible data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return to_plain(value.value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple | set | frozenset):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    return value


def from_plain(cls: type[T], data: object) -> T:
    """Build `cls` (a dataclass) from JSON data, checking every field; raises PayloadError."""
    result: T = _convert(cls, data, "")
    return result


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _dataclass(cls: type, data: object, path: str) -> object:
    if not isinstance(data, dict):
        raise PayloadError(f"{path or 'payload'}: expected an object, got {_kind(data)}")
    hints = _hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    unknown = set(data) - {f.name for f in fields}
    if unknown:
        raise PayloadError(f"{path or 'payload'}: unexpected field(s) {', '.join(sorted(map(str, unknown)))}")
    values: dict[str, object] = {}
    for f in fields:
        where = f"{path}.{f.name}" if path else f.name
        if f.name in data:
            values[f.name] = _convert(hints[f.name], data[f.name], where)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise PayloadError(f"{where}: missing")
    return cls(**values)


def _convert(hint: Any, data: object, path: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any or hint is object:
        return data
    if origin is typing.Union or origin is types.UnionType:
        others = [a for a in args if a is not type(None)]
        if data is not None and len(others) == 1:  # X | None: X's own reason is the useful one
            return _convert(others[0], data, path)
        for arg in args:  # the first alternative that fits, in declaration order
            try:
                return _convert(arg, data, path)
            except PayloadError:
                continue
        raise PayloadError(f"{path}: {_kind(data)} fits none of {hint}")
    if origin is typing.Literal:
        if data in args and type(data) in {type(a) for a in args}:
            return data
        raise PayloadError(f"{path}: {data!r} is not one of {list(args)}")
    if origin in (list, tuple, frozenset, set):
        return _sequence(origin, args, data, path)
    if origin is dict:
        if not isinstance(data, dict):
            raise PayloadError(f"{path}: expected an object, got {_kind(data)}")
        return {
            _convert(args[0], k, f"{path}[{k!r}]"): _convert(args[1], v, f"{path}[{k!r}]")
            for k, v in data.items()
        }
    if isinstance(hint, type):
        return _scalar(hint, data, path)
    raise PayloadError(f"{path}: unsupported annotation {hint!r}")


def _sequence(origin: type, args: tuple[Any, ...], data: object, path: str) -> object:
    if not isinstance(data, list):
        raise PayloadError(f"{path}: expected an array, got {_kind(data)}")
    if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        if len(args) != len(data):
            raise PayloadError(f"{path}: expected {len(args)} items, got {len(data)}")
        return tuple(_convert(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, data, strict=True)))
    item = args[0] if args else Any
    converted = [_convert(item, v, f"{path}[{i}]") for i, v in enumerate(data)]
    return converted if origin is list else origin(converted)


def _parse(path: str, kind: str, parse: Callable[[str], object], data: object) -> object:
    if not isinstance(data, str):
        raise PayloadError(f"{path}: expected {kind} as a string, got {_kind(data)}")
    try:
        return parse(data)
    except (ValueError, InvalidOperation) as error:
        raise PayloadError(f"{path}: {data!r} is not {kind}") from error


def _scalar(cls: type, data: object, path: str) -> object:
    if dataclasses.is_dataclass(cls):
        return _dataclass(cls, data, path)
    if cls is type(None):
        if data is None:
            return None
    elif cls is bool or cls is str:
        if type(data) is cls:
            return data
    elif cls is int:
        if type(data) is int:  # bool is an int in Python, never in a payload
            return data
    elif cls is float:
        if type(data) in (int, float):
            return float(data)  # type: ignore[arg-type]
    elif cls is datetime:
        return _parse(path, "an ISO 8601 date-time", datetime.fromisoformat, data)
    elif cls is date:
        return _parse(path, "an ISO 8601 date", date.fromisoformat, data)
    elif cls is Decimal:
        return _parse(path, "a decimal", Decimal, data)
    elif cls is uuid.UUID:
        return _parse(path, "a UUID", uuid.UUID, data)
    elif issubclass(cls, enum.Enum):
        try:
            return cls(data)
        except ValueError:
            raise PayloadError(f"{path}: {data!r} is not a {cls.__name__}") from None
    else:
        raise PayloadError(f"{path}: unsupported type {cls.__name__}")
    raise PayloadError(
        f"{path}: expected {cls.__name__ if cls is not type(None) else 'null'}, got {_kind(data)}"
    )


def _kind(data: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(data), type(data).__name__ if not isinstance(data, int | float) else "a number")
