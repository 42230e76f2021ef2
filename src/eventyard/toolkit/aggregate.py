"""Event-sourced aggregates: state is a fold of the entity's events; commands check it and emit more.

class Cart(Aggregate):
    def add_item(self, sku: str, quantity: int) -> None:    # a command: check, then emit
        if quantity <= 0:
            raise CommandRejected("quantity must be positive")
        self.emit(AddedItemToCart(cart_id=self.id, sku=sku, quantity=quantity))

    def apply(self, event: Event) -> None:                  # the fold: never checks, never fails
        ...
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Self

from eventyard.toolkit.events import Event


class Aggregate(ABC):
    def __init__(self, id: str) -> None:
        self.id = id
        self.version = 0  # how many stored events the state includes; the expected version of a save
        self._pending: list[Event] = []

    @abstractmethod
    def apply(self, event: Event) -> None:
        """Change the state by one event. Old events must stay applicable: no rule checks here."""

    def emit(self, *events: Event) -> None:
        """Record the outcome of a command: applied now, stored by the repository's save."""
        for event in events:
            self.apply(event)
            self._pending.append(event)

    @property
    def pending(self) -> tuple[Event, ...]:
        return tuple(self._pending)

    def replay(self, events: Iterable[Event]) -> Self:
        """Apply stored history (to a fresh aggregate): the state and version as of those events."""
        for event in events:
            self.apply(event)
            self.version += 1
        return self

    def mark_saved(self) -> None:
        self.version += len(self._pending)
        self._pending.clear()
