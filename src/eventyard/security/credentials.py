"""SCRAM credentials: what the broker keeps to authenticate users, never the password itself.

Per user and mechanism the store keeps RFC 5802 credentials: salt, iteration count,
StoredKey = H(HMAC(SaltedPassword, "Client Key")) and ServerKey = HMAC(SaltedPassword, "Server Key").
PLAIN is verified against the same data: the offered password is salted with the stored salt and
iterations and the derived StoredKey compared in constant time, so no plaintext is ever stored.

Rotation: a user may hold several credentials for one mechanism, newest first, each with an optional
expiry. PLAIN tries every valid one in turn. SCRAM must announce a single salt before the client proves
anything, so it offers the newest credential's salt and iterations and accepts a proof for any valid
credential sharing them; `rotate` therefore keeps the salt of the current credential, so clients still
using the old password keep working over SCRAM during the grace period. A credential upserted through
AlterUserScramCredentials brings its own client-chosen salt: during a grace period the old password then
works over PLAIN only.

Persistence: with a path, every change rewrites a JSON file atomically (temporary file, fsync, rename,
fsync of the directory), readable by its owner only; without one the store lives in memory.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import IntEnum
from pathlib import Path
from typing import Any, Protocol, TypeGuard

from eventyard.atomic_file import write_atomically
from eventyard.protocol.error_codes import ErrorCode

DEFAULT_ITERATIONS = 4096
MIN_ITERATIONS = 4096  # RFC 7677's minimum, and Kafka's
MAX_ITERATIONS = 16384  # Kafka refuses more in AlterUserScramCredentials
SALT_BYTES = 32
MIN_SALT_BYTES = 12  # scramp refuses shorter salts when authenticating
FORMAT_VERSION = 1


class Mechanism(IntEnum):
    """SCRAM mechanisms, numbered as in Alter/DescribeUserScramCredentials."""

    SCRAM_SHA_256 = 1
    SCRAM_SHA_512 = 2

    @property
    def sasl_name(self) -> str:
        return self.name.replace("_", "-")

    @property
    def hash_name(self) -> str:
        return "sha256" if self is Mechanism.SCRAM_SHA_256 else "sha512"

    @classmethod
    def from_sasl_name(cls, name: str) -> Mechanism | None:
        return next((m for m in cls if m.sasl_name == name), None)


class CredentialError(Exception):
    """A refused credential change or look-up, with the Kafka error code to answer it with."""

    def __init__(self, error_code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


class CredentialStoreError(ValueError):
    """The persisted file cannot be read as a credential store."""


def salt_password(mechanism: Mechanism, password: bytes, salt: bytes, iterations: int) -> bytes:
    """Hi(password, salt, i) of RFC 5802, which is PBKDF2-HMAC with the mechanism's hash."""
    return hashlib.pbkdf2_hmac(mechanism.hash_name, password, salt, iterations)


def derive_keys(mechanism: Mechanism, salted_password: bytes) -> tuple[bytes, bytes]:
    """(StoredKey, ServerKey) of RFC 5802 from a salted password."""
    client_key = hmac.digest(salted_password, b"Client Key", mechanism.hash_name)
    stored_key = hashlib.new(mechanism.hash_name, client_key).digest()
    return stored_key, hmac.digest(salted_password, b"Server Key", mechanism.hash_name)


@dataclass(frozen=True, slots=True)
class ScramCredential:
    mechanism: Mechanism
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes
    expires_at_ms: int | None = None

    def valid_at(self, now_ms: int) -> bool:
        return self.expires_at_ms is None or now_ms < self.expires_at_ms

    def matches_password(self, password: bytes) -> bool:
        salted = salt_password(self.mechanism, password, self.salt, self.iterations)
        return hmac.compare_digest(derive_keys(self.mechanism, salted)[0], self.stored_key)

    def to_json(self) -> dict[str, Any]:
        keys = {name: _b64(getattr(self, name)) for name in _BINARY_FIELDS}
        extra = {"iterations": self.iterations, "expires_at_ms": self.expires_at_ms}
        return {"mechanism": self.mechanism.sasl_name, **keys, **extra}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScramCredential:
        mechanism = Mechanism.from_sasl_name(data["mechanism"])
        iterations, expires = data["iterations"], data["expires_at_ms"]
        if mechanism is None or type(iterations) is not int or type(expires) not in (int, type(None)):
            raise CredentialStoreError("bad credential entry")  # not echoed: it holds key material
        salt, stored_key, server_key = (_unb64(data[name]) for name in _BINARY_FIELDS)
        return cls(mechanism, salt, iterations, stored_key, server_key, expires)


_BINARY_FIELDS = ("salt", "stored_key", "server_key")


@dataclass(frozen=True, slots=True)
class UserDescription:
    """One result of DescribeUserScramCredentials: (mechanism, iterations) per mechanism."""

    user: str
    error_code: ErrorCode
    error_message: str | None
    credentials: tuple[tuple[Mechanism, int], ...] = ()


@dataclass(frozen=True, slots=True)
class AlterResult:
    """One result of AlterUserScramCredentials."""

    user: str
    error_code: ErrorCode
    error_message: str | None


class Deletion(Protocol):
    """Shape of AlterUserScramCredentials' ScramCredentialDeletion."""

    name: str
    mechanism: int


class Upsertion(Deletion, Protocol):
    """Shape of AlterUserScramCredentials' ScramCredentialUpsertion."""

    iterations: int
    salt: bytes
    salted_password: bytes


class CredentialStore:
    """Users' SCRAM credentials, in memory or persisted to a JSON file."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._users: dict[str, list[ScramCredential]] = {}  # per user, newest first
        # Keyed derivation of fake credentials for unknown users; persisted so that an unknown user's
        # fake salt stays the same across restarts, as a real user's does.
        self._fake_key = secrets.token_bytes(32)
        if self.path is not None and self.path.exists():
            self._load(self.path)

    # -- queries

    def users(self) -> list[str]:
        return sorted(self._users)

    def credentials(self, user: str) -> list[ScramCredential]:
        """Every stored credential of a user, expired ones included, newest first per mechanism."""
        return list(self._users.get(user, ()))

    def valid(self, user: str, mechanism: Mechanism | None, now_ms: int) -> list[ScramCredential]:
        return [
            c
            for c in self._users.get(user, ())
            if (mechanism is None or c.mechanism is mechanism) and c.valid_at(now_ms)
        ]

    def scram_candidates(self, user: str, mechanism: Mechanism, now_ms: int) -> list[ScramCredential]:
        """The credentials a SCRAM exchange may match: the newest valid one first, then the older
        valid ones sharing its salt and iterations (a proof is only checkable against the salt sent)."""
        valid = self.valid(user, mechanism, now_ms)
        if not valid:
            return []
        first = valid[0]
        return [c for c in valid if c.salt == first.salt and c.iterations == first.iterations]

    def fake_credential(self, user: str, mechanism: Mechanism) -> ScramCredential:
        """Stable, unguessable credential for a user without one, so that SCRAM goes on as for a real
        user and fails only at the proof, like a wrong password."""
        tag = f"{mechanism.sasl_name}\0{user}".encode()
        salt = hmac.digest(self._fake_key, b"salt\0" + tag, "sha256")[:SALT_BYTES]
        stored = hmac.digest(self._fake_key, b"stored\0" + tag, mechanism.hash_name)
        server = hmac.digest(self._fake_key, b"server\0" + tag, mechanism.hash_name)
        return ScramCredential(mechanism, salt, DEFAULT_ITERATIONS, stored, server)

    def verify_password(self, user: str, password: bytes, now_ms: int) -> ScramCredential | None:
        """The valid credential (of any mechanism) the password matches, else None (PLAIN)."""
        candidates = self.valid(user, None, now_ms)
        if not candidates:
            # Spend what checking a typical user costs, so unknown users don't answer faster.
            for mechanism in Mechanism:
                self.fake_credential(user, mechanism).matches_password(password)
            return None
        return next((c for c in candidates if c.matches_password(password)), None)

    def describe(self, users: Sequence[str] | None, now_ms: int) -> list[UserDescription]:
        """DescribeUserScramCredentials: every user with credentials when users is None or empty."""
        if not users:
            names = [u for u in self.users() if self.valid(u, None, now_ms)]
            return [self._describe_one(u, now_ms) for u in names]
        twice = "cannot describe the SCRAM credentials of a user twice in one request"
        return [
            UserDescription(user, ErrorCode.DUPLICATE_RESOURCE, twice)
            if users.count(user) > 1
            else self._describe_one(user, now_ms)
            for user in dict.fromkeys(users)
        ]

    def _describe_one(self, user: str, now_ms: int) -> UserDescription:
        newest: dict[Mechanism, int] = {}
        for cred in self.valid(user, None, now_ms):
            newest.setdefault(cred.mechanism, cred.iterations)
        if not newest:
            missing = f"attempt to describe a user credential that does not exist: {user}"
            return UserDescription(user, ErrorCode.RESOURCE_NOT_FOUND, missing)
        return UserDescription(user, ErrorCode.NONE, None, tuple(sorted(newest.items())))

    # -- changes

    def upsert(
        self,
        user: str,
        mechanism: Mechanism,
        salt: bytes,
        iterations: int,
        salted_password: bytes,
        *,
        now_ms: int = 0,
        grace_ms: int | None = None,
        expires_at_ms: int | None = None,
    ) -> ScramCredential:
        """Install a credential from a client-computed salted password (AlterUserScramCredentials).

        Without grace_ms it replaces the user's credentials for the mechanism; with it the older ones
        stay valid until now_ms + grace_ms (or their own earlier expiry)."""
        cred = _credential(user, mechanism, salt, iterations, salted_password, expires_at_ms)
        self._install(user, cred, now_ms, grace_ms)
        self.save()
        return cred

    def set_password(
        self,
        user: str,
        mechanism: Mechanism,
        password: str,
        *,
        iterations: int = DEFAULT_ITERATIONS,
        expires_at_ms: int | None = None,
    ) -> ScramCredential:
        """Replace the user's credentials for the mechanism with ones for password, under a new salt."""
        salt = secrets.token_bytes(SALT_BYTES)
        salted = salt_password(mechanism, password.encode(), salt, iterations)
        return self.upsert(user, mechanism, salt, iterations, salted, expires_at_ms=expires_at_ms)

    def ensure_password(
        self, user: str, mechanism: Mechanism, password: str, *, iterations: int = DEFAULT_ITERATIONS
    ) -> bool:
        """Make password the user's credential for the mechanism unless the newest valid one already
        is (same iterations): bootstrapping at every start then leaves the file and salt alone.
        True when it changed something."""
        current = self.valid(user, mechanism, _now_ms())
        if current and current[0].iterations == iterations and current[0].matches_password(password.encode()):
            return False
        self.set_password(user, mechanism, password, iterations=iterations)
        return True

    def rotate(
        self,
        user: str,
        mechanism: Mechanism,
        password: str,
        *,
        now_ms: int,
        grace_ms: int,
        expires_at_ms: int | None = None,
    ) -> ScramCredential:
        """Add a credential for a new password; the old ones stay valid for grace_ms. The salt and
        iterations of the current credential are kept so SCRAM can check both passwords."""
        current = self.scram_candidates(user, mechanism, now_ms)
        salt = current[0].salt if current else secrets.token_bytes(SALT_BYTES)
        iterations = current[0].iterations if current else DEFAULT_ITERATIONS
        salted = salt_password(mechanism, password.encode(), salt, iterations)
        cred = _credential(user, mechanism, salt, iterations, salted, expires_at_ms)
        self._install(user, cred, now_ms, grace_ms)
        self.save()
        return cred

    def delete(self, user: str, mechanism: Mechanism) -> None:
        """Remove every credential of the user for the mechanism (RESOURCE_NOT_FOUND if none)."""
        self._delete(user, mechanism)
        self.save()

    def purge_expired(self, now_ms: int) -> int:
        """Forget expired credentials; returns how many."""
        purged = 0
        for user in list(self._users):
            kept = [c for c in self._users[user] if c.valid_at(now_ms)]
            purged += len(self._users[user]) - len(kept)
            if kept:
                self._users[user] = kept
            else:
                del self._users[user]
        if purged:
            self.save()
        return purged

    def alter(
        self, deletions: Iterable[Deletion], upsertions: Iterable[Upsertion], now_ms: int = 0
    ) -> list[AlterResult]:
        """AlterUserScramCredentials: each user's changes are applied all or nothing; one result per
        user, in order of first appearance; one write at the end."""
        per_user: dict[str, list[Deletion | Upsertion]] = {}
        for change in [*deletions, *upsertions]:
            per_user.setdefault(change.name, []).append(change)
        results = []
        for user, changes in per_user.items():
            before = self._users.get(user)  # never mutated in place: restoring it undoes the user's changes
            try:
                if not user:
                    raise CredentialError(ErrorCode.UNACCEPTABLE_CREDENTIAL, "username must not be empty")
                if len({c.mechanism for c in changes}) != len(changes):
                    twice = "a user credential cannot be altered twice in the same request"
                    raise CredentialError(ErrorCode.DUPLICATE_RESOURCE, twice)
                for change in changes:
                    if _is_upsertion(change):
                        args = (change.mechanism, change.salt, change.iterations, change.salted_password)
                        self._install(user, _credential(user, *args), now_ms, None)
                    else:
                        self._delete(user, _mechanism(change.mechanism))
            except CredentialError as exc:
                if before is None:
                    self._users.pop(user, None)
                else:
                    self._users[user] = before
                results.append(AlterResult(user, exc.error_code, exc.message))
            else:
                results.append(AlterResult(user, ErrorCode.NONE, None))
        self.save()
        return results

    def _install(self, user: str, cred: ScramCredential, now_ms: int, grace_ms: int | None) -> None:
        others = [c for c in self._users.get(user, ()) if c.mechanism is not cred.mechanism]
        older: list[ScramCredential] = []
        if grace_ms is not None:
            deadline = now_ms + grace_ms
            for old in self.valid(user, cred.mechanism, now_ms):
                if old.stored_key == cred.stored_key:
                    continue  # the same password again: the new entry supersedes it
                expiry = deadline if old.expires_at_ms is None else min(old.expires_at_ms, deadline)
                older.append(replace(old, expires_at_ms=expiry))
        self._users[user] = [cred, *older, *others]

    def _delete(self, user: str, mechanism: Mechanism) -> None:
        creds = self._users.get(user, [])
        kept = [c for c in creds if c.mechanism is not mechanism]
        if len(kept) == len(creds):
            missing = f"attempt to delete a user credential that does not exist: {user}"
            raise CredentialError(ErrorCode.RESOURCE_NOT_FOUND, missing)
        if kept:
            self._users[user] = kept
        else:
            del self._users[user]

    # -- persistence

    def save(self) -> None:
        """Write the store to its file atomically; a no-op for an in-memory store."""
        if self.path is None:
            return
        data = {
            "version": FORMAT_VERSION,
            "fake_key": _b64(self._fake_key),
            "users": {user: [c.to_json() for c in creds] for user, creds in sorted(self._users.items())},
        }
        write_atomically(self.path, json.dumps(data, indent=2, sort_keys=True).encode() + b"\n")

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_bytes())
            if data.get("version") != FORMAT_VERSION:
                raise CredentialStoreError(f"unsupported credential store version {data.get('version')!r}")
            self._fake_key = _unb64(data["fake_key"])
            self._users = {
                str(user): [ScramCredential.from_json(c) for c in creds]
                for user, creds in data["users"].items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            if isinstance(exc, CredentialStoreError):
                raise
            raise CredentialStoreError(f"cannot read credential store {path}: {exc}") from exc


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _mechanism(value: int) -> Mechanism:
    try:
        return Mechanism(value)
    except ValueError:
        raise CredentialError(
            ErrorCode.UNSUPPORTED_SASL_MECHANISM, f"unknown SCRAM mechanism {value}"
        ) from None


def _credential(
    user: str,
    mechanism: int,
    salt: bytes,
    iterations: int,
    salted_password: bytes,
    expires: int | None = None,
) -> ScramCredential:
    """A checked credential from a client-computed salted password; the password is never seen."""
    mech = _mechanism(mechanism)
    refusals = [
        (not user, "username must not be empty"),
        (iterations < MIN_ITERATIONS, f"too few iterations (min {MIN_ITERATIONS})"),
        (iterations > MAX_ITERATIONS, f"too many iterations (max {MAX_ITERATIONS})"),
        (len(salt) < MIN_SALT_BYTES, f"salt shorter than {MIN_SALT_BYTES} bytes"),
        (
            len(salted_password) != hashlib.new(mech.hash_name).digest_size,
            f"salted password has the wrong length for {mech.sasl_name}",
        ),
    ]
    for refused, message in refusals:
        if refused:
            raise CredentialError(ErrorCode.UNACCEPTABLE_CREDENTIAL, message)
    stored_key, server_key = derive_keys(mech, salted_password)
    return ScramCredential(mech, salt, iterations, stored_key, server_key, expires)


def _is_upsertion(change: Deletion | Upsertion) -> TypeGuard[Upsertion]:
    return hasattr(change, "salted_password")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)
