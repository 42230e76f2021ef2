"""The cart's domain: its events, its rules, and the fold that rebuilds its state. No Kafka here."""

from __future__ import annotations

from typing import Any

from eventyard.toolkit import Aggregate, CommandRejected, Event, EventRegistry


class AddedItemToCart(Event, name="cart.item_added", version=2):
    cart_id: str
    sku: str
    quantity: int


class ChangedItemQuantity(Event, name="cart.item_quantity_changed"):
    cart_id: str
    sku: str
    quantity: int


class RemovedItemFromCart(Event, name="cart.item_removed"):
    cart_id: str
    sku: str


events = EventRegistry(AddedItemToCart, ChangedItemQuantity, RemovedItemFromCart)


@events.upcaster("cart.item_added", from_version=1)
def _one_of_each(payload: dict[str, Any]) -> dict[str, Any]:
    # Version 1 carts could only hold one of each item: the quantity was implicit.
    return {**payload, "quantity": 1}


class Cart(Aggregate):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.items: dict[str, int] = {}  # sku -> quantity

    # -- commands: check the rules against the current state, then emit what happened --

    def add_item(self, sku: str, quantity: int) -> None:
        _positive(quantity)
        if sku in self.items:
            raise CommandRejected(f"{sku} is already in the cart: change its quantity instead")
        self.emit(AddedItemToCart(cart_id=self.id, sku=sku, quantity=quantity))

    def change_quantity(self, sku: str, quantity: int) -> None:
        _positive(quantity)
        if sku not in self.items:
            raise CommandRejected(f"{sku} is not in the cart")
        if self.items[sku] != quantity:  # the same quantity again changes nothing: no event
            self.emit(ChangedItemQuantity(cart_id=self.id, sku=sku, quantity=quantity))

    def remove_item(self, sku: str) -> None:
        if sku not in self.items:
            raise CommandRejected(f"{sku} is not in the cart")
        self.emit(RemovedItemFromCart(cart_id=self.id, sku=sku))

    # -- the fold: how each event changes the state; no checks, old events must always apply --

    def apply(self, event: Event) -> None:
        match event:
            case (
                AddedItemToCart(sku=sku, quantity=quantity) | ChangedItemQuantity(sku=sku, quantity=quantity)
            ):
                self.items[sku] = quantity
            case RemovedItemFromCart(sku=sku):
                self.items.pop(sku, None)


def _positive(quantity: int) -> None:
    if quantity <= 0:
        raise CommandRejected(f"quantity must be positive, not {quantity}")
