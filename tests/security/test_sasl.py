"""SASL state machines and the SCRAM credential store, driven without sockets and with a fake clock.

The SCRAM client is scramp's client side; the server is also checked against RFC 7677's example."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from scramp import ScramClient, ScramMechanism  # type: ignore[import-untyped]

from eventyard.protocol.error_codes import ErrorCode
from eventyard.protocol.messages.alter_user_scram_credentials_request import (
    ScramCredentialDeletion,
    ScramCredentialUpsertion,
)
from eventyard.security.credentials import (
    CredentialError,
    CredentialStore,
    CredentialStoreError,
    Mechanism,
    derive_keys,
    salt_password,
)
from eventyard.security.sasl import INVALID_CREDENTIALS, ReplayGuard, SaslServer, Step

SHA256, SHA512 = Mechanism.SCRAM_SHA_256, Mechanism.SCRAM_SHA_512
FAILED = ErrorCode.SASL_AUTHENTICATION_FAILED
PASSWORD = "correct horse battery staple"


class Clock:
    def __init__(self, now: int = 1_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> CredentialStore:
    store = CredentialStore()
    store.set_password("alice", SHA256, PASSWORD)
    store.set_password("alice", SHA512, PASSWORD)
    store.set_password("bob", SHA512, "bob's password")
    return store


def server_for(store: CredentialStore, clock: Clock, mechanism: str, **kwargs: Any) -> SaslServer:
    server = SaslServer(store, now_ms=clock, **kwargs)
    assert server.handshake(mechanism) == (ErrorCode.NONE, ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
    return server


def plain(store: CredentialStore, clock: Clock, token: bytes) -> Step:
    return server_for(store, clock, "PLAIN").authenticate(token)


def scram(server: SaslServer, mechanism: str, user: str, password: str) -> Step:
    """A full exchange; the client checks the server's signature when the server says yes."""
    client = ScramClient([mechanism], user, password)
    first = server.authenticate(client.get_client_first().encode())
    assert first.error_code == ErrorCode.NONE and not first.done and first.principal is None
    client.set_server_first(first.challenge.decode())
    final = server.authenticate(client.get_client_final().encode())
    if final.error_code == ErrorCode.NONE:
        client.set_server_final(final.challenge.decode())
    return final


def assert_refused(step: Step, message: str | None = None) -> None:
    assert (step.error_code, step.done, step.principal, step.challenge) == (FAILED, True, None, b"")
    if message is not None:
        assert step.error_message == message


# -- PLAIN


def test_plain_ok(store: CredentialStore, clock: Clock) -> None:
    server = server_for(store, clock, "PLAIN")
    step = server.authenticate(b"\0alice\0" + PASSWORD.encode())
    assert step == Step(ErrorCode.NONE, None, b"", True, "alice", 0)
    assert server.authenticated and server.principal == "alice"
    # a user with only a SCRAM-SHA-512 credential, and an authzid equal to the username
    assert plain(store, clock, b"bob\0bob\0bob's password").principal == "bob"


def test_plain_wrong_password_and_unknown_user_look_the_same(store: CredentialStore, clock: Clock) -> None:
    wrong = plain(store, clock, b"\0alice\0not it")
    unknown = plain(store, clock, b"\0mallory\0not it")
    assert_refused(wrong, INVALID_CREDENTIALS)
    assert unknown == wrong


def test_plain_authzid_must_be_empty_or_the_user(store: CredentialStore, clock: Clock) -> None:
    step = plain(store, clock, b"bob\0alice\0" + PASSWORD.encode())
    assert_refused(step)
    assert "authorization id" in (step.error_message or "")


@pytest.mark.parametrize(
    "token",
    [
        b"",
        b"alice",
        b"\0alice",
        b"\0\0pw",
        b"\0alice\0",
        b"\0alice\0pw\0extra",
        b"\0al\xffice\0pw",
        b"\0a\0\xff",
    ],
)
def test_plain_malformed(store: CredentialStore, clock: Clock, token: bytes) -> None:
    step = plain(store, clock, token)
    assert_refused(step)
    assert "Malformed PLAIN" in (step.error_message or "")


# -- SCRAM


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_full_exchange(store: CredentialStore, clock: Clock, mechanism: str) -> None:
    server = server_for(store, clock, mechanism)
    step = scram(server, mechanism, "alice", PASSWORD)
    assert (step.error_code, step.done, step.principal) == (ErrorCode.NONE, True, "alice")
    assert step.challenge.startswith(b"v=")
    assert server.authenticated and server.mechanism == mechanism


def test_scram_sha_256_rfc7677_example(clock: Clock) -> None:
    # RFC 7677 section 3: user "user", password "pencil", with its salt and both nonces.
    store = CredentialStore()
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    store.upsert("user", SHA256, salt, 4096, hashlib.pbkdf2_hmac("sha256", b"pencil", salt, 4096))
    server_nonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    server = server_for(store, clock, "SCRAM-SHA-256", server_nonce=lambda: server_nonce)
    first = server.authenticate(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
    assert first.challenge == (
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    final = server.authenticate(
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    assert final == Step(
        ErrorCode.NONE, None, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", True, "user"
    )


@pytest.mark.parametrize("mechanism", [SHA256, SHA512])
def test_derived_keys_agree_with_scramp(mechanism: Mechanism) -> None:
    salt = bytes(range(16))
    _, stored, server, _ = ScramMechanism(mechanism.sasl_name).make_auth_info("pencil", 4096, salt)
    assert derive_keys(mechanism, salt_password(mechanism, b"pencil", salt, 4096)) == (stored, server)


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_wrong_password_and_unknown_user_look_the_same(
    store: CredentialStore, clock: Clock, mechanism: str
) -> None:
    wrong = scram(server_for(store, clock, mechanism), mechanism, "alice", "not it")
    unknown = scram(server_for(store, clock, mechanism), mechanism, "mallory", "not it")
    assert_refused(wrong, INVALID_CREDENTIALS)
    assert unknown == wrong


def server_first_fields(store: CredentialStore, clock: Clock, user: str) -> dict[str, str]:
    server = server_for(store, clock, "SCRAM-SHA-256")
    step = server.authenticate(ScramClient(["SCRAM-SHA-256"], user, "x").get_client_first().encode())
    return dict(attr.split("=", 1) for attr in step.challenge.decode().split(","))


def test_scram_unknown_user_gets_a_stable_fake_salt_shaped_like_a_real_one(
    store: CredentialStore, clock: Clock
) -> None:
    real = server_first_fields(store, clock, "alice")
    fake = server_first_fields(store, clock, "mallory")
    assert fake["i"] == real["i"] == "4096"
    assert len(fake["s"]) == len(real["s"]) and len(fake["r"]) == len(real["r"])
    assert server_first_fields(store, clock, "mallory")["s"] == fake["s"]  # stable, as a real salt is
    assert server_first_fields(store, clock, "bob")["s"] != fake["s"]  # bob has no SHA-256 credential


def test_scram_nonce_mismatch_is_refused(store: CredentialStore, clock: Clock) -> None:
    server = server_for(store, clock, "SCRAM-SHA-256")
    client = ScramClient(["SCRAM-SHA-256"], "alice", PASSWORD)
    client.set_server_first(server.authenticate(client.get_client_first().encode()).challenge.decode())
    attrs = client.get_client_final().split(",")
    attrs[1] = attrs[1][:-1] + ("A" if attrs[1][-1] != "A" else "B")  # r=: the combined nonce
    step = server.authenticate(",".join(attrs).encode())
    assert_refused(step)
    assert "nonce" in (step.error_message or "")
    assert not server.authenticated


def test_scram_replayed_client_first_is_refused(store: CredentialStore, clock: Clock) -> None:
    client_first = ScramClient(["SCRAM-SHA-256"], "alice", PASSWORD).get_client_first().encode()
    assert not server_for(store, clock, "SCRAM-SHA-256").authenticate(client_first).done
    replay = server_for(store, clock, "SCRAM-SHA-256").authenticate(client_first)  # another connection
    assert_refused(replay)
    assert "replayed" in (replay.error_message or "")
    clock.now += 11 * 60 * 1000  # past the window the nonce is forgotten
    assert not server_for(store, clock, "SCRAM-SHA-256").authenticate(client_first).done


def test_replay_guard_is_bounded() -> None:
    guard = ReplayGuard(window_ms=1000, capacity=3)
    assert all(guard.check_and_remember(n, 0) for n in "abcd")
    assert not guard.check_and_remember("d", 1)
    assert guard.check_and_remember("a", 2)  # evicted early to stay within capacity


@pytest.mark.parametrize(
    "client_first",
    [b"y,,n=alice,r=abcdefgh", b"p=tls-unique,,n=alice,r=abcdefgh", b"p=tls-server-end-point,,n=a,r=x"],
)
def test_scram_channel_binding_flags_other_than_n_are_refused(
    store: CredentialStore, clock: Clock, client_first: bytes
) -> None:
    step = server_for(store, clock, "SCRAM-SHA-256").authenticate(client_first)
    assert_refused(step)
    assert "Channel binding" in (step.error_message or "")


def test_scram_channel_binding_data_in_client_final_must_match(store: CredentialStore, clock: Clock) -> None:
    server = server_for(store, clock, "SCRAM-SHA-256")
    client = ScramClient(["SCRAM-SHA-256"], "alice", PASSWORD)
    client.set_server_first(server.authenticate(client.get_client_first().encode()).challenge.decode())
    tampered = client.get_client_final().replace("c=biws", "c=eSws", 1)  # base64 of "y,,"
    assert_refused(server.authenticate(tampered.encode()))


@pytest.mark.parametrize(
    "client_first",
    [
        b"",
        b"garbage",
        b"n,,",
        b"n,,n=alice",
        b"n,,r=abc,n=alice",
        b"n,a=alice,n=alice,r=abc",
        b"n,,n=\xff,r=a",
    ],
)
def test_scram_malformed_client_first(store: CredentialStore, clock: Clock, client_first: bytes) -> None:
    step = server_for(store, clock, "SCRAM-SHA-512").authenticate(client_first)
    assert_refused(step)
    assert "Malformed" in (step.error_message or "")


@pytest.mark.parametrize("client_final", [b"", b"garbage", b"c=biws", b"\xff\xfe"])
def test_scram_malformed_client_final(store: CredentialStore, clock: Clock, client_final: bytes) -> None:
    server = server_for(store, clock, "SCRAM-SHA-256")
    server.authenticate(ScramClient(["SCRAM-SHA-256"], "alice", PASSWORD).get_client_first().encode())
    assert_refused(server.authenticate(client_final))


# -- the state machine


def test_everything_is_refused_after_a_failure(store: CredentialStore, clock: Clock) -> None:
    server = server_for(store, clock, "SCRAM-SHA-256")
    assert_refused(scram(server, "SCRAM-SHA-256", "alice", "not it"))
    assert server.failed and not server.authenticated
    assert_refused(server.authenticate(b"n,,n=alice,r=fresh-nonce"))
    assert server.handshake("SCRAM-SHA-256")[0] == ErrorCode.ILLEGAL_SASL_STATE
    assert_refused(server.authenticate(b"\0alice\0" + PASSWORD.encode()))
    assert server.principal is None


def test_handshake_rules(store: CredentialStore, clock: Clock) -> None:
    only_scram = SaslServer(store, ["SCRAM-SHA-512"], clock)
    assert only_scram.handshake("PLAIN") == (ErrorCode.UNSUPPORTED_SASL_MECHANISM, ["SCRAM-SHA-512"])
    assert only_scram.failed
    assert SaslServer(store).handshake("GSSAPI")[0] == ErrorCode.UNSUPPORTED_SASL_MECHANISM
    early = SaslServer(store, now_ms=clock)
    assert early.authenticate(b"\0alice\0" + PASSWORD.encode()).error_code == ErrorCode.ILLEGAL_SASL_STATE
    twice = server_for(store, clock, "PLAIN")
    assert twice.handshake("PLAIN")[0] == ErrorCode.ILLEGAL_SASL_STATE
    with pytest.raises(ValueError, match="GSSAPI"):
        SaslServer(store, ["GSSAPI"])


def test_scram_is_complete_only_after_the_final_step(store: CredentialStore, clock: Clock) -> None:
    server = server_for(store, clock, "SCRAM-SHA-256")
    server.authenticate(ScramClient(["SCRAM-SHA-256"], "alice", PASSWORD).get_client_first().encode())
    assert not server.authenticated and server.principal is None


def test_reauthentication_keeps_mechanism_and_principal(store: CredentialStore, clock: Clock) -> None:
    server = server_for(store, clock, "SCRAM-SHA-512", max_session_ms=60_000)
    first = scram(server, "SCRAM-SHA-512", "alice", PASSWORD)
    assert first.session_lifetime_ms == 60_000 and server.session_expires_at_ms == clock.now + 60_000
    clock.now += 30_000
    assert server.handshake("SCRAM-SHA-512")[0] == ErrorCode.NONE
    assert server.authenticated  # the current session goes on while re-authenticating
    assert scram(server, "SCRAM-SHA-512", "alice", PASSWORD).principal == "alice"
    assert server.session_expires_at_ms == clock.now + 60_000
    assert server.handshake("SCRAM-SHA-512")[0] == ErrorCode.NONE
    assert_refused(
        scram(server, "SCRAM-SHA-512", "bob", "bob's password"),
        "Re-authentication must keep the same principal",
    )
    other = server_for(store, clock, "PLAIN")
    other.authenticate(b"\0alice\0" + PASSWORD.encode())
    assert other.handshake("SCRAM-SHA-256")[0] == ErrorCode.ILLEGAL_SASL_STATE
    assert not other.authenticated


# -- credential expiry and rotation


def test_credential_with_expiry_accepted_before_refused_after(store: CredentialStore, clock: Clock) -> None:
    store.set_password("temp", SHA256, "short-lived", expires_at_ms=clock.now + 5_000)
    step = plain(store, clock, b"\0temp\0short-lived")
    assert step.principal == "temp" and step.session_lifetime_ms == 5_000  # bounded by the expiry
    assert scram(server_for(store, clock, "SCRAM-SHA-256"), "SCRAM-SHA-256", "temp", "short-lived").principal
    clock.now += 5_000
    assert_refused(plain(store, clock, b"\0temp\0short-lived"), INVALID_CREDENTIALS)
    expired = scram(server_for(store, clock, "SCRAM-SHA-256"), "SCRAM-SHA-256", "temp", "short-lived")
    assert_refused(expired, INVALID_CREDENTIALS)


@pytest.mark.parametrize("mechanism", [SHA256, SHA512])
def test_rotation_grace_period(store: CredentialStore, clock: Clock, mechanism: Mechanism) -> None:
    store.rotate("alice", mechanism, "new password", now_ms=clock.now, grace_ms=10_000)
    name = mechanism.sasl_name
    for password in (PASSWORD, "new password"):  # both work over PLAIN and SCRAM during the grace period
        assert plain(store, clock, b"\0alice\0" + password.encode()).principal == "alice"
        assert scram(server_for(store, clock, name), name, "alice", password).principal == "alice"
    assert store.describe(["alice"], clock.now)[0].credentials == ((SHA256, 4096), (SHA512, 4096))
    clock.now += 10_000
    assert_refused(scram(server_for(store, clock, name), name, "alice", PASSWORD), INVALID_CREDENTIALS)
    assert scram(server_for(store, clock, name), name, "alice", "new password").principal == "alice"
    if mechanism is SHA256:  # PLAIN still finds the old password in the other mechanism's credential
        assert plain(store, clock, b"\0alice\0" + PASSWORD.encode()).principal == "alice"
    store.purge_expired(clock.now)
    assert len([c for c in store.credentials("alice") if c.mechanism is mechanism]) == 1


def test_upsert_with_grace_keeps_the_old_password_for_plain(clock: Clock) -> None:
    store = CredentialStore()
    store.set_password("carol", SHA256, "old")
    salt = os.urandom(24)
    salted = salt_password(SHA256, b"new", salt, 8192)
    store.upsert("carol", SHA256, salt, 8192, salted, now_ms=clock.now, grace_ms=1_000)
    assert plain(store, clock, b"\0carol\0old").principal == "carol"
    assert scram(server_for(store, clock, "SCRAM-SHA-256"), "SCRAM-SHA-256", "carol", "new").principal
    clock.now += 1_000
    assert_refused(plain(store, clock, b"\0carol\0old"))


# -- AlterUserScramCredentials / DescribeUserScramCredentials


def test_alter_upsert_with_client_computed_salted_password(clock: Clock) -> None:
    store = CredentialStore()
    salt = os.urandom(32)
    upsert = ScramCredentialUpsertion(
        name="dave",
        mechanism=SHA512,
        iterations=8192,
        salt=salt,
        salted_password=hashlib.pbkdf2_hmac("sha512", b"dave's password", salt, 8192),
    )
    results = store.alter([], [upsert], clock.now)
    assert [(r.user, r.error_code) for r in results] == [("dave", ErrorCode.NONE)]
    assert scram(
        server_for(store, clock, "SCRAM-SHA-512"), "SCRAM-SHA-512", "dave", "dave's password"
    ).principal
    assert plain(store, clock, b"\0dave\0dave's password").principal == "dave"
    [described] = store.describe(None, clock.now)
    assert (described.user, described.credentials) == ("dave", ((SHA512, 8192),))
    store.alter([ScramCredentialDeletion(name="dave", mechanism=SHA512)], [], clock.now)
    assert store.describe([], clock.now) == [] and store.users() == []


def test_alter_refusals_are_per_user_and_all_or_nothing(store: CredentialStore, clock: Clock) -> None:
    def up(
        name: str, mechanism: int = SHA256, iterations: int = 4096, salt: bytes = b"s" * 16
    ) -> ScramCredentialUpsertion:
        return ScramCredentialUpsertion(name, mechanism, iterations, salt, b"k" * 32)

    before = store.credentials("alice")
    results = store.alter(
        [ScramCredentialDeletion("alice", SHA512), ScramCredentialDeletion("ghost", SHA256)],
        [
            up("alice", iterations=100),
            up("erin", mechanism=3),
            up("frank", iterations=20_000),
            up("grace", salt=b"short"),
            up("heidi"),
            up("heidi", SHA256),
            up(""),
        ],
        clock.now,
    )
    assert [(r.user, r.error_code) for r in results] == [
        ("alice", ErrorCode.UNACCEPTABLE_CREDENTIAL),
        ("ghost", ErrorCode.RESOURCE_NOT_FOUND),
        ("erin", ErrorCode.UNSUPPORTED_SASL_MECHANISM),
        ("frank", ErrorCode.UNACCEPTABLE_CREDENTIAL),
        ("grace", ErrorCode.UNACCEPTABLE_CREDENTIAL),
        ("heidi", ErrorCode.DUPLICATE_RESOURCE),
        ("", ErrorCode.UNACCEPTABLE_CREDENTIAL),
    ]
    assert all(r.error_message for r in results)
    assert store.credentials("alice") == before  # its deletion was undone with the refused upsert
    assert store.users() == ["alice", "bob"]
    with pytest.raises(CredentialError) as refused:
        store.delete("bob", SHA256)
    assert refused.value.error_code == ErrorCode.RESOURCE_NOT_FOUND


def test_describe(store: CredentialStore, clock: Clock) -> None:
    assert [(d.user, d.credentials) for d in store.describe(None, clock.now)] == [
        ("alice", ((SHA256, 4096), (SHA512, 4096))),
        ("bob", ((SHA512, 4096),)),
    ]
    described = store.describe(["bob", "nobody", "alice", "alice"], clock.now)
    assert [(d.user, d.error_code) for d in described] == [
        ("bob", ErrorCode.NONE),
        ("nobody", ErrorCode.RESOURCE_NOT_FOUND),
        ("alice", ErrorCode.DUPLICATE_RESOURCE),
    ]
    assert described[1].error_message and "nobody" in described[1].error_message


# -- persistence


def test_persistence_round_trip(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "auth" / "credentials.json"
    store = CredentialStore(path)
    store.set_password("alice", SHA256, PASSWORD)
    store.rotate("alice", SHA512, PASSWORD, now_ms=clock.now, grace_ms=5)
    store.set_password("bob", SHA512, "bob's password", iterations=8192, expires_at_ms=clock.now + 60_000)
    fake_salt = server_first_fields(store, clock, "mallory")["s"]
    reopened = CredentialStore(path)
    assert reopened.users() == ["alice", "bob"]
    for user in ("alice", "bob"):
        assert reopened.credentials(user) == store.credentials(user)
    assert scram(
        server_for(reopened, clock, "SCRAM-SHA-512"), "SCRAM-SHA-512", "bob", "bob's password"
    ).principal
    assert server_first_fields(reopened, clock, "mallory")["s"] == fake_salt  # fake salts survive restarts
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_no_plaintext_password_in_the_file(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "credentials.json"
    store = CredentialStore(path)
    password = "Pl41ntext-Secret"
    store.set_password("alice", SHA256, password)
    store.rotate("alice", SHA512, password, now_ms=clock.now, grace_ms=1)
    salt = os.urandom(16)
    store.upsert("bob", SHA256, salt, 4096, salt_password(SHA256, password.encode(), salt, 4096))
    content = path.read_bytes()
    encoded = password.encode()
    for form in (encoded, encoded.hex().encode(), base64.b64encode(encoded), password.lower().encode()):
        assert form not in content
    entries = [c for creds in json.loads(content)["users"].values() for c in creds]
    assert entries and all(
        set(c) == {"mechanism", "salt", "iterations", "stored_key", "server_key", "expires_at_ms"}
        for c in entries
    )


def test_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "credentials.json"
    store = CredentialStore(path)
    store.set_password("alice", SHA256, PASSWORD)
    original = path.read_bytes()
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)

    def crash(*_args: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        store.set_password("bob", SHA256, "bob's password")
    assert path.read_bytes() == original  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["credentials.json"]  # no temporary file left
    assert synced  # the new content was fsynced before the rename was tried
    monkeypatch.undo()
    store.save()
    assert CredentialStore(path).users() == ["alice", "bob"]


@pytest.mark.parametrize(
    "content", [b"not json", b"{}", b'{"version": 99}', b'{"version": 1, "fake_key": "!!"}']
)
def test_corrupt_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "credentials.json"
    path.write_bytes(content)
    with pytest.raises(CredentialStoreError):
        CredentialStore(path)
