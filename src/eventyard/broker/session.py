"""What the broker knows about one client connection: the listener it came in on, who it is,
and where its SASL exchange stands."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from eventyard.broker.config import Listener

if TYPE_CHECKING:
    from eventyard.security.sasl import SaslServer

ANONYMOUS = "User:ANONYMOUS"
# Served before a SASL client has authenticated (Kafka's rule): everything else closes the connection.
PRE_AUTHENTICATION_APIS = frozenset({17, 18, 36})  # SaslHandshake, ApiVersions, SaslAuthenticate


@dataclass(slots=True)
class Session:
    listener: Listener
    port: int  # the port this listener is bound to (differs from listener.port when that was 0)
    peer: str
    principal: str = ANONYMOUS
    sasl: SaslServer | None = None
    # After SaslHandshake v0 the client sends bare tokens, with no request header (legacy framing).
    raw_tokens: bool = False
    close_after_response: bool = False

    @property
    def authenticated(self) -> bool:
        return self.sasl is None or self.sasl.authenticated

    @property
    def advertised_host(self) -> str:
        host = self.listener.advertised_host or self.listener.host
        return "127.0.0.1" if host in ("0.0.0.0", "") else host
