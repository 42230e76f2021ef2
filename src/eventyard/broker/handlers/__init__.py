"""One handler per API. Each module registers its handlers with `handles`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eventyard.broker.broker import Broker, RequestContext

# A handler returns the response, or None when none is sent (Produce with acks=0).
Handler = Callable[["Broker", "RequestContext", Any], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Route:
    handler: Handler
    min_version: int
    max_version: int


ROUTES: dict[int, Route] = {}


def handles(api_key: int, min_version: int, max_version: int) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        ROUTES[api_key] = Route(handler, min_version, max_version)
        return handler

    return register


def load_all() -> dict[int, Route]:
    from eventyard.broker.handlers import (  # noqa: F401
        acls,
        admin,
        client_quotas,
        configs,
        consumer_groups,
        fetch,
        group_offsets,
        groups,
        logdirs,
        metadata,
        offsets,
        produce,
        sasl,
    )

    return ROUTES
