"""ClusterAdmin: the Kafka-protocol operations the control plane needs, against Eventyard or Apache
Kafka alike. confluent-kafka's AdminClient for what it has (SCRAM users, ACLs, topics, configs,
partitions, groups); eventyard.wire_client (platform.wire_admin) for client quotas, DescribeLogDirs
and Eventyard's extensions (tenant limits, failure injection)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported without __all__
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from eventyard.platform import wire_admin
from eventyard.platform.errors import BadRequest, ClusterError, Conflict, NotFound, PlanLimit, PlatformError
from eventyard.platform.failures import EventyardFailureInjector, FailureInjector, NoFailureInjector
from eventyard.platform.wire_admin import Connection, WireError
from eventyard.protocol.error_codes import ErrorCode

log = logging.getLogger(__name__)

TIMEOUT = 15.0
SCRAM_ITERATIONS = 4096
READ_ONLY = "read-only"
READ_WRITE = "read-write"
ACCESS_LEVELS = (READ_ONLY, READ_WRITE)

# What each access level may do on the tenant's prefixed resources. No CREATE or ALTER_CONFIGS:
# topics are made and tuned through the control plane only, within the plan.
_TOPIC_OPS = {
    READ_ONLY: (AclOperation.READ, AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS),
    READ_WRITE: (AclOperation.READ, AclOperation.WRITE, AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS),
}
_GROUP_OPS = {
    READ_ONLY: (AclOperation.READ, AclOperation.DESCRIBE),
    READ_WRITE: (AclOperation.READ, AclOperation.DESCRIBE, AclOperation.DELETE),
}

_ERRORS: dict[int, type[PlatformError]] = {
    KafkaError.POLICY_VIOLATION: PlanLimit,
    KafkaError.TOPIC_ALREADY_EXISTS: Conflict,
    KafkaError.UNKNOWN_TOPIC_OR_PART: NotFound,
    KafkaError.GROUP_ID_NOT_FOUND: NotFound,
    KafkaError.RESOURCE_NOT_FOUND: NotFound,
    KafkaError.NON_EMPTY_GROUP: Conflict,
    KafkaError.INVALID_PARTITIONS: BadRequest,
    KafkaError.INVALID_REPLICATION_FACTOR: BadRequest,
    KafkaError.INVALID_CONFIG: BadRequest,
    KafkaError.TOPIC_EXCEPTION: BadRequest,
}


def _wait(future: Future[Any], what: str) -> Any:
    try:
        return future.result(TIMEOUT)
    except KafkaException as exc:
        error: KafkaError = exc.args[0]
        kind = _ERRORS.get(error.code(), ClusterError)
        raise kind(f"{what}: {error.str()}") from None
    except TimeoutError:
        raise ClusterError(f"{what}: the cluster did not answer in {TIMEOUT:.0f}s") from None


def _principal(username: str) -> str:
    return f"User:{username}"


class ClusterAdmin:
    def __init__(self, connection: Connection, injector: FailureInjector | None = None) -> None:
        self.connection = connection
        conf: dict[str, str | int | float | bool] = {
            "bootstrap.servers": connection.bootstrap,
            "security.protocol": connection.security_protocol,
        }
        if connection.security_protocol.startswith("SASL_"):
            conf["sasl.mechanism"] = connection.mechanism
            conf["sasl.username"] = connection.username or ""
            conf["sasl.password"] = connection.password or ""
        if connection.ca_file:
            conf["ssl.ca.location"] = connection.ca_file
        # librdkafka's own log lines go through logging, not straight to stderr.
        self.admin = AdminClient(conf, logger=logging.getLogger("eventyard.platform.librdkafka"))
        self._injector = injector
        self._tenant_limits: bool | None = None  # learnt on first use

    def injector(self, eventyard: bool) -> FailureInjector:
        """The injector given, else Eventyard's broker configs on a cluster known to be Eventyard
        (it took the tenant entity), else none: Apache Kafka would accept those configs silently."""
        if self._injector is not None:
            return self._injector
        return EventyardFailureInjector(self.connection) if eventyard else NoFailureInjector()

    # -- cluster

    def brokers(self) -> list[tuple[str, int]]:
        try:
            metadata = self.admin.list_topics(timeout=TIMEOUT)
        except KafkaException as exc:
            raise ClusterError(f"cluster metadata: {exc.args[0].str()}") from None
        return [(str(b.host), int(b.port)) for b in metadata.brokers.values()]

    def default_replication(self) -> int:
        return min(3, len(self.brokers()))

    # -- users, ACLs, quotas

    def create_user(self, username: str, password: str) -> None:
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
        upsert = UserScramCredentialUpsertion(username, info, password.encode())
        for future in self.admin.alter_user_scram_credentials([upsert]).values():
            _wait(future, f"create user {username}")

    def delete_user(self, username: str) -> None:
        """Remove the user's SCRAM credential; an unknown user is not an error (idempotent)."""
        deletion = UserScramCredentialDeletion(username, ScramMechanism.SCRAM_SHA_512)
        for future in self.admin.alter_user_scram_credentials([deletion]).values():
            with contextlib.suppress(NotFound):
                _wait(future, f"delete user {username}")

    def grant(self, username: str, prefix: str, access: str) -> None:
        """Prefixed ACLs on the tenant's topics and groups for one credential."""
        if access not in ACCESS_LEVELS:
            raise BadRequest(f"access must be one of {', '.join(ACCESS_LEVELS)}")
        bindings = [
            AclBinding(
                restype,
                prefix,
                ResourcePatternType.PREFIXED,
                _principal(username),
                "*",
                op,
                AclPermissionType.ALLOW,
            )
            for restype, ops in (
                (ResourceType.TOPIC, _TOPIC_OPS[access]),
                (ResourceType.GROUP, _GROUP_OPS[access]),
            )
            for op in ops
        ]
        for future in self.admin.create_acls(bindings).values():
            _wait(future, f"ACLs of {username}")

    def revoke(self, username: str) -> None:
        """Every ACL naming the user, whatever its resource."""
        wanted = AclBindingFilter(
            ResourceType.ANY,
            None,  # type: ignore[arg-type]  # None matches any name
            ResourcePatternType.ANY,
            _principal(username),
            None,  # type: ignore[arg-type]  # and any host
            AclOperation.ANY,
            AclPermissionType.ANY,
        )
        for future in self.admin.delete_acls([wanted]).values():
            _wait(future, f"ACLs of {username}")

    def set_user_quota(
        self, username: str, produce_byte_rate: int | None, consume_byte_rate: int | None
    ) -> None:
        """Byte rates of one user (None removes them)."""
        values: dict[str, float | None] = {
            "producer_byte_rate": produce_byte_rate,
            "consumer_byte_rate": consume_byte_rate,
        }
        wire_admin.set_quotas(self.connection, [("user", username)], values)

    def user_quota(self, username: str) -> dict[str, float]:
        return wire_admin.get_quotas(self.connection, "user", username)

    def set_tenant_limits(
        self, prefix: str, max_partitions: int | None, max_stored_bytes: int | None
    ) -> bool:
        """Eventyard's `tenant` quota entity; False where the cluster does not know it (Apache
        Kafka), in which case the control plane enforces the limits itself."""
        if self._tenant_limits is False:
            return False
        values: dict[str, float | None] = {
            "max_partitions": max_partitions,
            "max_stored_bytes": max_stored_bytes,
        }
        try:
            wire_admin.set_quotas(self.connection, [("tenant", prefix)], values)
        except WireError as exc:
            if exc.error_code in (ErrorCode.INVALID_REQUEST, ErrorCode.UNSUPPORTED_VERSION):
                log.info("the cluster has no tenant limits (%s): the control plane enforces them", exc)
                self._tenant_limits = False
                return False
            raise
        self._tenant_limits = True
        return True

    def tenant_limits_supported(self) -> bool | None:
        return self._tenant_limits

    # -- topics

    def create_topic(self, name: str, partitions: int, replication: int, configs: Mapping[str, str]) -> None:
        topic = NewTopic(
            name, num_partitions=partitions, replication_factor=replication, config=dict(configs)
        )
        for future in self.admin.create_topics([topic], operation_timeout=TIMEOUT).values():
            _wait(future, f"create topic {name}")

    def alter_topic(self, name: str, configs: Mapping[str, str]) -> None:
        entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in configs.items()]
        resource = ConfigResource(ResourceType.TOPIC, name, incremental_configs=entries)
        for future in self.admin.incremental_alter_configs([resource]).values():
            _wait(future, f"configure topic {name}")

    def add_partitions(self, name: str, total: int) -> None:
        for future in self.admin.create_partitions(
            [NewPartitions(name, total)], operation_timeout=TIMEOUT
        ).values():
            _wait(future, f"partitions of {name}")

    def delete_topics(self, names: list[str]) -> None:
        if not names:
            return
        for future in self.admin.delete_topics(names, operation_timeout=TIMEOUT).values():
            with contextlib.suppress(NotFound):  # already gone: deleting is idempotent
                _wait(future, "delete topics")

    def topics(self, prefix: str) -> dict[str, int]:
        """Topics whose names start with prefix, with their partition counts."""
        try:
            metadata = self.admin.list_topics(timeout=TIMEOUT)
        except KafkaException as exc:
            raise ClusterError(f"cluster metadata: {exc.args[0].str()}") from None
        return {name: len(t.partitions) for name, t in metadata.topics.items() if name.startswith(prefix)}

    def stored_bytes(self, partitions: Mapping[str, int]) -> int:
        return wire_admin.stored_bytes(self.connection, self.brokers(), partitions)

    # -- groups

    def groups(self, prefix: str) -> dict[str, str]:
        """Consumer groups the cluster knows under the prefix, with their states."""
        result = _wait(self.admin.list_consumer_groups(request_timeout=TIMEOUT), "list groups")
        return {
            g.group_id: getattr(g.state, "name", str(g.state)).lower()
            for g in result.valid
            if g.group_id.startswith(prefix)
        }

    def delete_group(self, group_id: str) -> None:
        """Delete a group's committed offsets; a group the cluster never saw is not an error."""
        for future in self.admin.delete_consumer_groups([group_id], request_timeout=TIMEOUT).values():
            with contextlib.suppress(NotFound):
                _wait(future, f"delete group {group_id}")
