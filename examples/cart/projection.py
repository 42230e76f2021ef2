"""The cart_items table: one row per (cart, sku) with its current quantity."""

from __future__ import annotations

from typing import ClassVar

from eventyard.toolkit import Projection, RecordedEvent, Transaction
from examples.cart.domain import AddedItemToCart, ChangedItemQuantity, RemovedItemFromCart


class CartItems(Projection):
    name = "cart-items"
    tables: ClassVar[tuple[str, ...]] = ("cart_items",)

    def create(self, tx: Transaction) -> None:
        tx.execute(
            "CREATE TABLE IF NOT EXISTS cart_items ("
            "cart_id TEXT NOT NULL, sku TEXT NOT NULL, quantity INTEGER NOT NULL, PRIMARY KEY (cart_id, sku))"
        )

    def apply(self, tx: Transaction, recorded: RecordedEvent) -> None:
        # The same fold as Cart.apply, in SQL: an add or a change sets the quantity, a removal deletes.
        match recorded.event:
            case (
                AddedItemToCart(cart_id=cart, sku=sku, quantity=quantity)
                | ChangedItemQuantity(cart_id=cart, sku=sku, quantity=quantity)
            ):
                tx.send(  # send: no row count needed, so PostgreSQL need not answer before the next
                    "INSERT INTO cart_items VALUES (?, ?, ?) "
                    "ON CONFLICT (cart_id, sku) DO UPDATE SET quantity = excluded.quantity",
                    (cart, sku, quantity),
                )
            case RemovedItemFromCart(cart_id=cart, sku=sku):
                tx.send("DELETE FROM cart_items WHERE cart_id = ? AND sku = ?", (cart, sku))


def rows(tx: Transaction) -> list[tuple[str, str, int]]:
    return [
        (c, s, int(q))
        for c, s, q in tx.query("SELECT cart_id, sku, quantity FROM cart_items ORDER BY cart_id, sku")
    ]
