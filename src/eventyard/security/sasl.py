"""SASL authentication of one connection, as a sans-IO state machine: PLAIN, SCRAM-SHA-256/512.

One `SaslServer` per connection. `handshake(mechanism)` answers SaslHandshake; `authenticate(token)`
takes each client token and returns a `Step`: the challenge to send back, and whether the exchange is
over (authenticated iff its error code is NONE). PLAIN takes one token; SCRAM (RFC 5802, RFC 7677) takes
two: client-first -> server-first, then client-final -> server-final. The SCRAM messages are parsed and
checked by the `scramp` library; this module adds the Kafka rules around it.

Framing, which is the broker's concern (this module only ever sees the tokens):

* Before authentication only ApiVersions and SaslHandshake are served; any other request closes the
  connection (Kafka answers it with ILLEGAL_SASL_STATE and disconnects).
* SaslHandshake v1 (KIP-152): each token arrives as the auth_bytes of a SaslAuthenticate request and
  is answered by a SaslAuthenticateResponse carrying error_code, error_message, auth_bytes=challenge
  and, from v1, session_lifetime_ms.
* SaslHandshake v0 (legacy): after the handshake response the connection carries raw tokens: each is
  a 4-byte big-endian length then the token, with no request header, and each answer is the challenge
  framed the same way, even when empty (PLAIN's success is a zero-length token). Errors cannot be
  expressed in this framing: on failure the broker just closes the connection.
* After any failed Step (done, error_code != NONE) the broker sends the error (v1) and closes the
  connection; this state machine refuses everything further anyway.
* Re-authentication (KIP-368), optional: when `max_session_ms` is set or the credential used expires,
  a successful Step carries `session_lifetime_ms` > 0 and `session_expires_at_ms` is set. The broker
  must then close the connection once it expires, unless the client re-authenticated first by sending
  SaslHandshake + SaslAuthenticate again on the same connection, which this object accepts after
  success (same mechanism, same principal). Clients on SaslAuthenticate v0 cannot re-authenticate and
  are simply disconnected at expiry.
"""

from __future__ import annotations

import secrets
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from scramp import ScramException, ScramMechanism  # type: ignore[import-untyped]

from eventyard.protocol.error_codes import ErrorCode
from eventyard.security.credentials import CredentialStore, Mechanism, ScramCredential

PLAIN = "PLAIN"
SUPPORTED_MECHANISMS = (PLAIN, *(m.sasl_name for m in Mechanism))
INVALID_CREDENTIALS = "Authentication failed: invalid username or password"
DEFAULT_REPLAY_WINDOW_MS = 10 * 60 * 1000
DEFAULT_REPLAY_CAPACITY = 100_000


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Step:
    """The answer to one client token. `done` means the exchange is over; it succeeded iff error_code
    is NONE, and then principal names the authenticated user."""

    error_code: ErrorCode
    error_message: str | None
    challenge: bytes
    done: bool
    principal: str | None = None
    session_lifetime_ms: int = 0


class ReplayGuard:
    """Client nonces seen recently, across connections: a client-first message reusing one is refused.

    Bounded: past `capacity` entries the oldest are forgotten early."""

    def __init__(
        self, window_ms: int = DEFAULT_REPLAY_WINDOW_MS, capacity: int = DEFAULT_REPLAY_CAPACITY
    ) -> None:
        self.window_ms = window_ms
        self.capacity = capacity
        self._expiry: dict[str, int] = {}  # insertion order is expiry order (the clock only moves on)

    def check_and_remember(self, nonce: str, now_ms: int) -> bool:
        """True if the nonce is fresh (and now remembered), False if it was seen within the window."""
        while self._expiry:
            oldest, expiry = next(iter(self._expiry.items()))
            if expiry > now_ms and len(self._expiry) < self.capacity:
                break
            del self._expiry[oldest]
        if nonce in self._expiry:
            return False
        self._expiry[nonce] = now_ms + self.window_ms
        return True


# One guard per store unless told otherwise: a store serves one broker, so its connections share it.
_guards: weakref.WeakKeyDictionary[CredentialStore, ReplayGuard] = weakref.WeakKeyDictionary()


def _guard_for(store: CredentialStore) -> ReplayGuard:
    guard = _guards.get(store)
    if guard is None:
        guard = _guards[store] = ReplayGuard()
    return guard


class _Phase(Enum):
    HANDSHAKE = "awaiting SaslHandshake"
    AUTHENTICATE = "awaiting the first token"
    SCRAM_FINAL = "awaiting the SCRAM client-final message"
    AUTHENTICATED = "authenticated"
    FAILED = "failed"


class SaslServer:
    """The SASL state of one connection. `now_ms` is the clock, in milliseconds."""

    def __init__(
        self,
        store: CredentialStore,
        enabled_mechanisms: Sequence[str] = SUPPORTED_MECHANISMS,
        now_ms: Callable[[], int] = wall_clock_ms,
        *,
        max_session_ms: int = 0,
        replay_guard: ReplayGuard | None = None,
        server_nonce: Callable[[], str] = secrets.token_urlsafe,
    ) -> None:
        unknown = set(enabled_mechanisms) - set(SUPPORTED_MECHANISMS)
        if unknown:
            raise ValueError(f"unsupported SASL mechanisms {sorted(unknown)}")
        self.store = store
        self.enabled_mechanisms = list(enabled_mechanisms)
        self.now_ms = now_ms
        self.max_session_ms = max_session_ms
        self.replay_guard = replay_guard if replay_guard is not None else _guard_for(store)
        self.server_nonce = server_nonce
        self.mechanism: str | None = None
        self.principal: str | None = None  # set once authenticated; kept through re-authentication
        self.session_expires_at_ms: int | None = None
        self._phase = _Phase.HANDSHAKE
        self._scram_user: str | None = None
        self._scram: list[tuple[Any, ScramCredential | None]] = []  # (scramp server, credential)

    @property
    def authenticated(self) -> bool:
        return self.principal is not None and self._phase is not _Phase.FAILED

    @property
    def failed(self) -> bool:
        return self._phase is _Phase.FAILED

    def handshake(self, mechanism: str) -> tuple[ErrorCode, list[str]]:
        """SaslHandshake: (error_code, enabled mechanisms). Any error ends the exchange."""
        if self._phase is _Phase.AUTHENTICATED:
            # KIP-368 re-authentication keeps the mechanism of the session.
            if mechanism != self.mechanism:
                return self._fail_handshake(ErrorCode.ILLEGAL_SASL_STATE)
        elif self._phase is not _Phase.HANDSHAKE:
            return self._fail_handshake(ErrorCode.ILLEGAL_SASL_STATE)
        elif mechanism not in self.enabled_mechanisms:
            return self._fail_handshake(ErrorCode.UNSUPPORTED_SASL_MECHANISM)
        self.mechanism = mechanism
        self._phase = _Phase.AUTHENTICATE
        return ErrorCode.NONE, list(self.enabled_mechanisms)

    def authenticate(self, auth_bytes: bytes) -> Step:
        """Take one client token (SaslAuthenticate's auth_bytes, or a raw token after handshake v0)."""
        phase = self._phase
        if phase is _Phase.FAILED:
            return self._fail("Authentication already failed on this connection")
        if phase in (_Phase.HANDSHAKE, _Phase.AUTHENTICATED):
            return self._fail("SASL token received before SaslHandshake", ErrorCode.ILLEGAL_SASL_STATE)
        try:
            if self.mechanism == PLAIN:
                return self._plain(auth_bytes)
            if phase is _Phase.AUTHENTICATE:
                return self._scram_first(auth_bytes)
            return self._scram_final(auth_bytes)
        except UnicodeDecodeError:
            return self._fail(f"Malformed {self.mechanism} message: not valid UTF-8")
        except Exception as exc:
            # Fail closed: whatever a parser chokes on must not leave a half-authenticated state.
            return self._fail(f"Malformed {self.mechanism} message: {type(exc).__name__}")

    # -- PLAIN (RFC 4616)

    def _plain(self, auth_bytes: bytes) -> Step:
        parts = auth_bytes.split(b"\0")
        if len(parts) != 3:
            return self._fail("Malformed PLAIN message: expected authzid NUL username NUL password")
        authzid, user = parts[0].decode(), parts[1].decode()
        password = parts[2]
        password.decode()  # refuses invalid UTF-8, as a client's string never encodes to it
        if not user or not password:
            return self._fail("Malformed PLAIN message: username and password must not be empty")
        if authzid and authzid != user:
            return self._fail("Authentication failed: the authorization id must be empty or the username")
        cred = self.store.verify_password(user, password, self.now_ms())
        if cred is None:
            return self._fail(INVALID_CREDENTIALS)
        return self._succeed(user, cred, b"")

    # -- SCRAM (RFC 5802, RFC 7677)

    def _scram_first(self, auth_bytes: bytes) -> Step:
        text = auth_bytes.decode()
        flag = text.split(",", 1)[0]
        if flag == "y" or flag.startswith("p="):
            return self._fail("Channel binding is not supported: the GS2 flag must be 'n'")
        if flag != "n":
            return self._fail("Malformed SCRAM client-first message: the GS2 flag must be 'n'")
        assert self.mechanism is not None
        mechanism = Mechanism.from_sasl_name(self.mechanism)
        assert mechanism is not None
        now = self.now_ms()
        s_nonce = self.server_nonce()
        found: list[ScramCredential] = []

        def lookup(user: str) -> tuple[bytes, bytes, bytes, int]:
            # Called by scramp with the parsed username. A user without a valid credential gets a
            # stable fake one, so the exchange fails only at the proof, exactly like a wrong password.
            self._scram_user = user
            found.extend(self.store.scram_candidates(user, mechanism, now))
            cred = found[0] if found else self.store.fake_credential(user, mechanism)
            return cred.salt, cred.stored_key, cred.server_key, cred.iterations

        scram = ScramMechanism(mechanism.sasl_name)
        first = scram.make_server(lookup, s_nonce=s_nonce)
        try:
            first.set_client_first(text)
            server_first: str = first.get_server_first()
        except ScramException as exc:
            return self._fail(f"Malformed SCRAM client-first message: {exc.args[0]}")
        if not self.replay_guard.check_and_remember(_client_nonce(text), now):
            return self._fail("SCRAM client nonce was already used: replayed client-first message")
        self._scram = [(first, found[0] if found else None)]
        # Older credentials sharing the salt (a rotation's grace period) each get a server of their own
        # over the same messages; the proof is then checked against each in turn.
        for cred in found[1:]:
            values = (cred.salt, cred.stored_key, cred.server_key, cred.iterations)
            other = scram.make_server(lambda _user, v=values: v, s_nonce=s_nonce)
            other.set_client_first(text)
            if other.get_server_first() == server_first:
                self._scram.append((other, cred))
        self._phase = _Phase.SCRAM_FINAL
        return Step(ErrorCode.NONE, None, server_first.encode(), done=False)

    def _scram_final(self, auth_bytes: bytes) -> Step:
        text = auth_bytes.decode()
        servers, self._scram = self._scram, []
        for server, cred in servers:
            try:
                server.set_client_final(text)
                server_final: str = server.get_server_final()
            except ScramException as exc:
                if exc.server_error is not None and exc.server_error.value == "invalid-proof":
                    continue  # maybe the next credential of a rotation
                return self._fail(f"SCRAM client-final message rejected: {exc.args[0]}")
            if cred is None or self._scram_user is None:
                break  # a fake credential never authenticates anyone
            return self._succeed(self._scram_user, cred, server_final.encode())
        return self._fail(INVALID_CREDENTIALS)

    # -- outcomes

    def _succeed(self, user: str, cred: ScramCredential, challenge: bytes) -> Step:
        if self.principal is not None and user != self.principal:
            return self._fail("Re-authentication must keep the same principal")
        now = self.now_ms()
        lifetimes = [self.max_session_ms] if self.max_session_ms > 0 else []
        if cred.expires_at_ms is not None:
            lifetimes.append(cred.expires_at_ms - now)
        lifetime = max(1, min(lifetimes)) if lifetimes else 0
        self.principal = user
        self.session_expires_at_ms = now + lifetime if lifetime else None
        self._phase = _Phase.AUTHENTICATED
        return Step(ErrorCode.NONE, None, challenge, True, user, lifetime)

    def _fail(self, message: str, code: ErrorCode = ErrorCode.SASL_AUTHENTICATION_FAILED) -> Step:
        self._phase = _Phase.FAILED
        self._scram = []
        self.principal = None
        self.session_expires_at_ms = None
        return Step(code, message, b"", True)

    def _fail_handshake(self, code: ErrorCode) -> tuple[ErrorCode, list[str]]:
        self._fail("handshake refused", code)
        return code, list(self.enabled_mechanisms)


def _client_nonce(client_first: str) -> str:
    # Only called once scramp accepted the message, so the r= attribute is there and well formed.
    bare = client_first.split(",", 2)[2]
    return next(attr[2:] for attr in bare.split(",") if attr.startswith("r="))
