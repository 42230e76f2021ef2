"""Over TLS: the control plane's admin connection on SASL_SSL (WireClient and AdminClient trusting
the cluster's CA), and apps given KAFKA_TRUSTED_CERT."""

from __future__ import annotations

from pathlib import Path

from tests.platform.clients import consume, produce
from tests.platform.conftest import provision, sasl_ssl_platform


def test_sasl_ssl_end_to_end(tmp_path: Path) -> None:
    with sasl_ssl_platform(tmp_path) as (api, ca_file):
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
