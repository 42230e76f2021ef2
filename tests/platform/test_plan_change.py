"""Plan changes (PATCH /v1/addons/{addon}, `eventyard addons upgrade|downgrade`) against the real
broker: every credential's user quotas and the tenant limits change with the plan, as
DescribeClientQuotas shows; a downgrade the add-on's topics do not fit is refused with what to
change first, and goes through once they fit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType
from fastapi.testclient import TestClient

from eventyard.cli import main
from eventyard.platform.api import admin_connection, create_app
from eventyard.platform.cluster import ClusterAdmin
from eventyard.platform.plans import DAY_MS, HOUR_MS, KB, Plan
from eventyard.platform.service import PlatformService
from eventyard.platform.settings import Settings
from eventyard.platform.store import Store
from eventyard.protocol.messages import describe_client_quotas_request as describe_quotas
from eventyard.testing import BrokerProcess
from eventyard.wire_client import WireClient
from tests.platform.conftest import (
    ADMIN_PASSWORD,
    TINY,
    TOKEN,
    make_settings,
    provision,
    sasl_bootstrap,
    unique_app,
)
from tests.platform.test_cli import PlatformServer

pytestmark = pytest.mark.timeout(240)

# Smaller than TINY in every way that can refuse a downgrade.
MICRO = Plan(
    "micro",
    produce_byte_rate=64 * KB,
    consume_byte_rate=128 * KB,
    capacity_bytes=512 * KB,
    max_partitions=2,
    max_topics=2,
    retention_ms_min=HOUR_MS,
    retention_ms_max=DAY_MS,
    compaction_allowed=False,
    max_partitions_per_topic=2,
    default_partitions=1,
    default_retention_ms=HOUR_MS,
)
PLANS = {"micro": MICRO, "tiny": TINY}


def plan_settings(broker: BrokerProcess, path: Path) -> Settings:
    return make_settings(broker, f"sqlite:///{path / 'plans.db'}", plans=PLANS)


@pytest.fixture(scope="module")
def api(secure_broker: BrokerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = plan_settings(secure_broker, tmp_path_factory.mktemp("plan-change"))
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


def quotas(broker: BrokerProcess, entity_type: str, name: str) -> dict[str, float]:
    """DescribeClientQuotas straight from the broker, as the admin (not through the control plane)."""
    request = describe_quotas.DescribeClientQuotasRequest(
        components=[describe_quotas.ComponentData(entity_type=entity_type, match_type=0, match=name)],
        strict=True,
    )
    host, _, port = sasl_bootstrap(broker).rpartition(":")
    with WireClient(host, int(port), sasl=("SCRAM-SHA-512", "admin", ADMIN_PASSWORD)) as client:
        response = client.request(request, 1)
    assert response.error_code == 0, response.error_message
    return {v.key: v.value for entry in response.entries or [] for v in entry.values}


def usernames(api: TestClient, addon: str, apps: list[str]) -> list[str]:
    return [
        api.get(f"/v1/addons/{addon}/config", params={"app": app}).json()["KAFKA_USERNAME"] for app in apps
    ]


def test_upgrade_raises_every_credentials_quota_and_the_tenant_limits(
    api: TestClient, secure_broker: BrokerProcess
) -> None:
    owner, reader = unique_app("owner"), unique_app("reader")
    addon = provision(api, plan="micro", app=owner)
    name, prefix = addon["name"], addon["prefix"]
    attached = api.post(f"/v1/addons/{name}/attachments", json={"app": reader, "access": "read-only"})
    assert attached.status_code == 201, attached.text
    users = usernames(api, name, [owner, reader])
    for user in users:
        assert quotas(secure_broker, "user", user)["producer_byte_rate"] == MICRO.produce_byte_rate
    assert quotas(secure_broker, "tenant", prefix)["max_partitions"] == MICRO.max_partitions
    assert addon["plan_history"] == [] and addon["plan_changed_at"] is None

    changed = api.patch(f"/v1/addons/{name}", json={"plan": "tiny"})
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["plan"] == "tiny" and body["limits"]["max_partitions"] == TINY.max_partitions
    assert [(h["from_plan"], h["to_plan"]) for h in body["plan_history"]] == [("micro", "tiny")]
    assert body["plan_changed_at"] == body["plan_history"][0]["changed_at"]
    for user in users:
        assert quotas(secure_broker, "user", user) == {
            "producer_byte_rate": TINY.produce_byte_rate,
            "consumer_byte_rate": TINY.consume_byte_rate,
        }
    assert quotas(secure_broker, "tenant", prefix) == {
        "max_partitions": TINY.max_partitions,
        "max_stored_bytes": TINY.capacity_bytes,
    }
    assert api.get(f"/v1/addons/{name}").json()["plan_history"] == body["plan_history"]

    again = api.patch(f"/v1/addons/{name}", json={"plan": "tiny"})  # nothing to do: no new entry
    assert again.status_code == 200 and len(again.json()["plan_history"]) == 1
    unknown = api.patch(f"/v1/addons/{name}", json={"plan": "gold"})
    assert unknown.status_code == 400 and "unknown plan" in unknown.json()["message"]
    assert api.patch("/v1/addons/no-such-addon", json={"plan": "tiny"}).status_code == 404
    assert api.patch(f"/v1/addons/{name}", json={"plan": "tiny", "x": 1}).status_code == 400


def test_downgrade_refused_until_the_topics_fit(api: TestClient, secure_broker: BrokerProcess) -> None:
    app = unique_app()
    addon = provision(api, plan="tiny", app=app)
    name, prefix = addon["name"], addon["prefix"]
    [user] = usernames(api, name, [app])
    topics = f"/v1/addons/{name}/topics"
    assert api.post(topics, json={"name": "wide", "partitions": 3}).status_code == 201
    kept = {"name": "kept", "partitions": 1, "compaction": True, "retention_ms": 2 * DAY_MS}
    assert api.post(topics, json=kept).status_code == 201

    refused = api.patch(f"/v1/addons/{name}", json={"plan": "micro"})
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"] == "plan_limit"
    message = refused.json()["message"]
    print(message)
    for fragment in ("4 partitions", "allows 2", "wide", "compaction", "retention", "kept"):
        assert fragment in message, (fragment, message)
    # Nothing changed: the plan, the quotas, the tenant limits.
    assert api.get(f"/v1/addons/{name}").json()["plan"] == "tiny"
    assert quotas(secure_broker, "user", user)["producer_byte_rate"] == TINY.produce_byte_rate
    assert quotas(secure_broker, "tenant", prefix)["max_partitions"] == TINY.max_partitions

    retuned = api.patch(f"{topics}/kept", json={"compaction": False, "retention_ms": 2 * HOUR_MS})
    assert retuned.status_code == 200, retuned.text
    refused = api.patch(f"/v1/addons/{name}", json={"plan": "micro"})
    assert refused.status_code == 422
    assert "partitions" in refused.json()["message"] and "compaction" not in refused.json()["message"]

    assert api.delete(f"{topics}/wide").status_code == 200
    allowed = api.patch(f"/v1/addons/{name}", json={"plan": "micro"})
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["plan"] == "micro"
    assert quotas(secure_broker, "user", user) == {
        "producer_byte_rate": MICRO.produce_byte_rate,
        "consumer_byte_rate": MICRO.consume_byte_rate,
    }
    assert quotas(secure_broker, "tenant", prefix)["max_partitions"] == MICRO.max_partitions
    # The broker enforces the smaller cap itself: 1 partition used, 2 more would exceed 2.
    admin = AdminClient(
        {
            "bootstrap.servers": sasl_bootstrap(secure_broker),
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": "admin",
            "sasl.password": ADMIN_PASSWORD,
        }
    )
    future = admin.create_topics([NewTopic(prefix + "around", 2, 1)])[prefix + "around"]
    with pytest.raises(KafkaException) as refused_by_broker:
        future.result(20)
    assert refused_by_broker.value.args[0].code() == KafkaError.POLICY_VIOLATION
    # And the control plane the new plan's limits.
    assert api.post(topics, json={"name": "compacted", "compaction": True}).status_code == 422


class _KafkaLike(ClusterAdmin):
    """The real broker, as a cluster that refuses the tenant entity (as Apache Kafka does) looks."""

    def set_tenant_limits(
        self, prefix: str, max_partitions: int | None, max_stored_bytes: int | None
    ) -> bool:
        return False


def test_without_tenant_limits_the_plan_change_sets_retention_bytes(
    secure_broker: BrokerProcess, tmp_path: Path
) -> None:
    settings = plan_settings(secure_broker, tmp_path)
    service = PlatformService(settings, Store(settings.db_url), _KafkaLike(admin_connection(settings)))
    with TestClient(create_app(settings, service), headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        addon = provision(api, plan="micro")
        assert addon["tenant_limits_on_cluster"] is False
        assert api.post(f"/v1/addons/{addon['name']}/topics", json={"name": "bounded"}).status_code == 201
        resource = ConfigResource(ResourceType.TOPIC, addon["prefix"] + "bounded")

        def retention_bytes() -> str:
            configs = service.cluster.admin.describe_configs([resource])[resource].result(10)
            return str(configs["retention.bytes"].value)

        assert retention_bytes() == str(MICRO.partition_retention_bytes())
        assert api.patch(f"/v1/addons/{addon['name']}", json={"plan": "tiny"}).status_code == 200
        assert retention_bytes() == str(TINY.partition_retention_bytes())
    service.close()


def test_cli_upgrade_and_downgrade(secure_broker: BrokerProcess, tmp_path: Path) -> None:
    with PlatformServer(plan_settings(secure_broker, tmp_path)) as server:
        env = {"EVENTYARD_PLATFORM_URL": server.url, "EVENTYARD_PLATFORM_TOKEN": TOKEN, "EVENTYARD_APP": None}

        def cli(*args: str) -> tuple[int, str]:
            result = CliRunner().invoke(main, list(args), env=env)
            assert "Traceback" not in result.output, result.output
            return result.exit_code, result.output

        name = f"kafka-{unique_app('plan')}"
        code, out = cli(
            "addons", "create", "--app", unique_app(), "--plan", "micro", "--name", name, "--wait"
        )
        assert code == 0, out
        code, out = cli("addons", "upgrade", name, "tiny")
        assert code == 0, out
        assert f"Upgraded {name} from micro to tiny." in out and "1.0 MB/s" in out
        code, out = cli("addons", "info", name)
        assert code == 0 and "Plan changed" in out and "from micro" in out, out
        code, out = cli("kafka", "topics", "create", "wide", name, "--partitions", "3")
        assert code == 0, out
        code, out = cli("addons", "downgrade", name, "micro")
        assert code == 1 and "3 partitions" in out and "wide" in out, out
        code, out = cli("kafka", "topics", "destroy", "wide", name, "--confirm", "wide")
        assert code == 0, out
        code, out = cli("addons", "downgrade", name, "micro")
        assert code == 0 and f"Downgraded {name} from tiny to micro." in out, out
        code, out = cli("addons", "downgrade", name, "micro")
        assert code == 0 and "already on micro" in out, out
