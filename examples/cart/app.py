"""The cart application: commands in (a tiny CLI), events to Kafka, the cart_items table out."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TextIO

from eventyard.toolkit import (
    CommandRejected,
    ConcurrencyConflict,
    KafkaEventLog,
    Projector,
    RecordedEvent,
    Repository,
    ensure_topic,
    read_topic,
)
from eventyard.toolkit.kafka import Config
from examples.cart.domain import Cart, events
from examples.cart.projection import CartItems, rows

# The talk's sequence: two carts, every kind of event, and a command the rules refuse.
SCRIPT = """\
add alice socks 2
add alice shirt 1
change alice socks 3
remove alice shirt
add bob hat 1
remove alice shirt
"""

USAGE = "commands: add CART SKU QUANTITY | change CART SKU QUANTITY | remove CART SKU | table | log | quit"


class CartService:
    def __init__(
        self,
        config: Config,
        topic: str = "carts",
        index: str | Path = ":memory:",
        database: str | Path = ":memory:",
    ) -> None:
        self.config = config
        self.topic = topic
        ensure_topic(config, topic, partitions=3)
        self.log = KafkaEventLog(config, topic, events, index)
        self.carts = Repository(Cart, self.log)
        self.projector = Projector(config, topic, CartItems(), events, database)

    def add_item(self, cart_id: str, sku: str, quantity: int) -> list[RecordedEvent]:
        return self._run(cart_id, lambda cart: cart.add_item(sku, quantity))

    def change_quantity(self, cart_id: str, sku: str, quantity: int) -> list[RecordedEvent]:
        return self._run(cart_id, lambda cart: cart.change_quantity(sku, quantity))

    def remove_item(self, cart_id: str, sku: str) -> list[RecordedEvent]:
        return self._run(cart_id, lambda cart: cart.remove_item(sku))

    def _run(self, cart_id: str, command: Callable[[Cart], None]) -> list[RecordedEvent]:
        cart = self.carts.load(cart_id)
        command(cart)  # CommandRejected if the rules say no
        return self.carts.save(cart)  # ConcurrencyConflict if another command came first

    def table(self) -> list[tuple[str, str, int]]:
        self.projector.catch_up()
        with self.projector.db.transaction() as tx:
            return rows(tx)

    def close(self) -> None:
        self.projector.close()
        self.log.close()

    def execute(self, line: str, out: TextIO) -> bool:
        """One CLI command; False once the user is done."""
        words = shlex.split(line)
        try:
            match words:
                case ["add", cart, sku, quantity]:
                    self._report(self.add_item(cart, sku, int(quantity)), out)
                case ["change", cart, sku, quantity]:
                    self._report(self.change_quantity(cart, sku, int(quantity)), out)
                case ["remove", cart, sku]:
                    self._report(self.remove_item(cart, sku), out)
                case ["table"]:
                    print(format_table(self.table()), file=out)
                case ["log"]:
                    print(self.format_log(), file=out)
                case ["quit"] | ["exit"]:
                    return False
                case []:
                    pass
                case _:
                    print(USAGE, file=out)
        except (CommandRejected, ConcurrencyConflict) as error:
            print(f"  rejected: {error}", file=out)
        except ValueError:
            print(f"  not a number in {line!r}; {USAGE}", file=out)
        return True

    def _report(self, recorded: list[RecordedEvent], out: TextIO) -> None:
        for r in recorded:
            print(f"  {title(r.event)} at {r.topic}[{r.partition}]@{r.offset}", file=out)
        if not recorded:
            print("  nothing changed", file=out)

    def format_log(self) -> str:
        lines = [f"{'partition':>9} {'offset':>6}  {'key':<6} {'event':<22} payload"]
        for record in read_topic(self.config, self.topic):
            name = dict(record.headers).get("event-type") or b"?"
            key = (record.key or b"").decode()
            value = (record.value or b"").decode()
            lines.append(f"{record.partition:>9} {record.offset:>6}  {key:<6} {name.decode():<22} {value}")
        return "\n".join(lines)


def title(event: object) -> str:
    """AddedItemToCart -> Added Item To Cart, as the talk's slides name events."""
    return " ".join(re.findall(r"[A-Z][a-z]*", type(event).__name__))


def format_table(table: Iterable[tuple[str, str, int]]) -> str:
    lines = ["cart_id | sku   | quantity", "--------+-------+---------"]
    lines += [f"{cart:<7} | {sku:<5} | {quantity}" for cart, sku, quantity in table]
    return "\n".join(lines)


def run(service: CartService, commands: Iterable[str], out: TextIO, echo: bool) -> None:
    for line in commands:
        if echo:
            print(f"> {line.strip()}", file=out)
        if not service.execute(line, out):
            break
