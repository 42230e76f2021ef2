"""Over TLS: the control plane's admin connection on SASL_SSL (WireClient and AdminClient trusting
the cluster's CA), and apps given KAFKA_TRUSTED_CERT."""

from __future__ import annotations

from pathlib import Path

import trustme
from fastapi.testclient import TestClient

from eventyard.platform.api import create_app
from eventyard.security.credentials import CredentialStore, Mechanism
from eventyard.testing import BrokerProcess
from tests.platform.clients import consume, produce
from tests.platform.conftest import ADMIN_PASSWORD, TOKEN, make_settings, provision


def test_sasl_ssl_end_to_end(tmp_path: Path) -> None:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, cert, key = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server-key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server.cert_chain_pems[0].write_to_path(str(cert))
    server.private_key_pem.write_to_path(str(key))
    data = tmp_path / "data"
    data.mkdir()
    CredentialStore(data / "users.json").set_password("admin", Mechanism.SCRAM_SHA_512, ADMIN_PASSWORD)
    args = (
        "--authorizer", "--super-user", "User:admin", "--no-auto-create",
        "--listener", "SASL_SSL://127.0.0.1:0", "--tls-cert", str(cert), "--tls-key", str(key),
    )  # fmt: skip
    with BrokerProcess(data, *args) as broker:
        settings = make_settings(
            broker,
            f"sqlite:///{tmp_path / 'p.db'}",
            bootstrap=f"127.0.0.1:{broker.listener_ports['SASL_SSL']}",
            admin_security_protocol="SASL_SSL",
            app_security_protocol="SASL_SSL",
            ca_file=ca_file,
        )
        with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as api:
            addon = provision(api)
            assert addon["tenant_limits_on_cluster"]  # the WireClient call went through over TLS
            env = api.get(f"/v1/addons/{addon['name']}/config").json()
            assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
            assert env["KAFKA_TRUSTED_CERT"] == ca_file.read_text()
            assert api.post(f"/v1/addons/{addon['name']}/topics", json={"name": "secure"}).status_code == 201
            topic = env["KAFKA_PREFIX"] + "secure"
            assert produce(env, topic, [b"encrypted"]) == [None]  # trusting the CA PEM it was given
            assert consume(env, topic, env["KAFKA_PREFIX"] + "g", 1) == [b"encrypted"]
            assert api.get(f"/v1/addons/{addon['name']}").json()["usage"]["stored_bytes"] > 0
