"""ClusterAdmin: the Kafka-protocol operations the control plane needs, against Eventyard or Apache
Kafka alike. confluent-kafka's AdminClient for what it has (SCRAM users, ACLs, topics, configs,
partitions, groups); eventyard.wire_client (platform.wire_admin) for client quotas, DescribeLogDirs
and Eventyard's extensions (tenant limits, failure injection).

Every call survives a broker that restarts or is briefly unreachable: reads, upserts and deletions
that ignore what is already gone are retried with a short backoff within a deadline
(platform.retry); CreateTopics and CreatePartitions are retried too, an answer that the topic or
the partitions exist already after a retry meaning that the lost first attempt went through."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
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
from eventyard.platform.retry import DEADLINE_S, Attempt, TransientError, retrying
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
# Transactional producers (the toolkit's publisher on Apache Kafka) name their transactional ids
# under the prefix too; a read-only credential never produces, so it gets none.
_TRANSACTIONAL_ID_OPS: dict[str, tuple[AclOperation, ...]] = {
    READ_ONLY: (),
    READ_WRITE: (AclOperation.WRITE, AclOperation.DESCRIBE),
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


# librdkafka's and Kafka's ways of saying "not now": no connection (yet), a timeout, no controller
# or coordinator yet. Not UNKNOWN_TOPIC_OR_PART, which Kafka calls retriable but means "gone" here.
_TRANSIENT = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
        KafkaError._RESOLVE,
        KafkaError._WAIT_COORD,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.BROKER_NOT_AVAILABLE,
        KafkaError.NETWORK_EXCEPTION,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
        KafkaError.NOT_CONTROLLER,
    }
)
_MARGIN_S = 5.0  # beyond the request timeout librdkafka was given, before giving up on a future


def _error(error: KafkaError, what: str) -> PlatformError:
    kind = TransientError if error.code() in _TRANSIENT else _ERRORS.get(error.code(), ClusterError)
    return kind(f"{what}: {error.str()}")


def _wait(future: Future[Any], what: str, timeout: float = TIMEOUT) -> Any:
    try:
        return future.result(timeout + _MARGIN_S)
    except KafkaException as exc:
        raise _error(exc.args[0], what) from None
    except TimeoutError:
        raise TransientError(f"{what}: the cluster did not answer in {timeout:.0f}s") from None


def _principal(username: str) -> str:
    return f"User:{username}"


class ClusterAdmin:
    def __init__(
        self,
        connection: Connection,
        injector: FailureInjector | None = None,
        retry_deadline_s: float = DEADLINE_S,
    ) -> None:
        self.connection = connection
        self.retry_deadline_s = retry_deadline_s  # all attempts of one operation together
        conf: dict[str, str | int | float | bool] = {
            "bootstrap.servers": connection.bootstrap,
            "security.protocol": connection.security_protocol,
            # Back soon after a broker restart, rather than after librdkafka's 10 s backoff cap.
            "reconnect.backoff.max.ms": 1000,
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

    # -- retries

    def _retrying(self, what: str, call: Callable[[Attempt], Any]) -> Any:
        return retrying(what, call, self.retry_deadline_s)

    def _each(
        self,
        what: str,
        request: Callable[[float], Mapping[Any, Future[Any]]],
        ignore: type[PlatformError] | None = None,
    ) -> None:
        """Send a request (librdkafka answers with a future per item), wait for every item, and
        send it again while the failure is transient; `ignore` names an error that means done."""

        def attempt(attempt: Attempt) -> None:
            for future in request(attempt.timeout).values():
                try:
                    _wait(future, what, attempt.timeout)
                except PlatformError as exc:
                    if ignore is None or not isinstance(exc, ignore):
                        raise

        self._retrying(what, attempt)

    def _metadata(self) -> Any:
        def attempt(attempt: Attempt) -> Any:
            try:
                return self.admin.list_topics(timeout=attempt.timeout)
            except KafkaException as exc:
                raise _error(exc.args[0], "cluster metadata") from None

        return self._retrying("cluster metadata", attempt)

    # -- cluster

    def brokers(self) -> list[tuple[str, int]]:
        metadata = self._metadata()
        return [(str(b.host), int(b.port)) for b in metadata.brokers.values()]

    def default_replication(self) -> int:
        return min(3, len(self.brokers()))

    # -- users, ACLs, quotas

    def create_user(self, username: str, password: str) -> None:
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
        upsert = UserScramCredentialUpsertion(username, info, password.encode())
        self._each(
            f"create user {username}",
            lambda t: self.admin.alter_user_scram_credentials([upsert], request_timeout=t),
        )

    def delete_user(self, username: str) -> None:
        """Remove the user's SCRAM credential; an unknown user is not an error (idempotent)."""
        deletion = UserScramCredentialDeletion(username, ScramMechanism.SCRAM_SHA_512)
        self._each(
            f"delete user {username}",
            lambda t: self.admin.alter_user_scram_credentials([deletion], request_timeout=t),
            ignore=NotFound,
        )

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
                (ResourceType.TRANSACTIONAL_ID, _TRANSACTIONAL_ID_OPS[access]),
            )
            for op in ops
        ]
        # Creating a binding that exists is a no-op: safe to send again.
        self._each(f"ACLs of {username}", lambda t: self.admin.create_acls(bindings, request_timeout=t))

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
        self._each(f"ACLs of {username}", lambda t: self.admin.delete_acls([wanted], request_timeout=t))

    def set_user_quota(
        self, username: str, produce_byte_rate: int | None, consume_byte_rate: int | None
    ) -> None:
        """Byte rates of one user (None removes them)."""
        values: dict[str, float | None] = {
            "producer_byte_rate": produce_byte_rate,
            "consumer_byte_rate": consume_byte_rate,
        }
        wire_admin.set_quotas(self.connection, [("user", username)], values, self.retry_deadline_s)

    def user_quota(self, username: str) -> dict[str, float]:
        return wire_admin.get_quotas(self.connection, "user", username, self.retry_deadline_s)

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
            wire_admin.set_quotas(self.connection, [("tenant", prefix)], values, self.retry_deadline_s)
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
        what = f"create topic {name}"

        def attempt(attempt: Attempt) -> None:
            futures = self.admin.create_topics(
                [topic], operation_timeout=attempt.timeout, request_timeout=attempt.timeout
            )
            for future in futures.values():
                try:
                    _wait(future, what, attempt.timeout)
                except Conflict:
                    # TOPIC_ALREADY_EXISTS: a conflict on the first attempt; after a retry, the
                    # earlier attempt whose answer was lost made it.
                    if not attempt.is_retry:
                        raise
                    log.info("%s: made by an earlier attempt", what)

        self._retrying(what, attempt)

    def alter_topic(self, name: str, configs: Mapping[str, str]) -> None:
        entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in configs.items()]
        resource = ConfigResource(ResourceType.TOPIC, name, incremental_configs=entries)
        self._each(
            f"configure topic {name}",
            lambda t: self.admin.incremental_alter_configs([resource], request_timeout=t),
        )

    def add_partitions(self, name: str, total: int) -> None:
        what = f"partitions of {name}"

        def attempt(attempt: Attempt) -> None:
            futures = self.admin.create_partitions(
                [NewPartitions(name, total)],
                operation_timeout=attempt.timeout,
                request_timeout=attempt.timeout,
            )
            for future in futures.values():
                try:
                    _wait(future, what, attempt.timeout)
                except BadRequest:
                    # INVALID_PARTITIONS after a retry: done if the lost attempt reached the total.
                    if not attempt.is_retry or self.topics(name).get(name) != total:
                        raise

        self._retrying(what, attempt)

    def delete_topics(self, names: list[str]) -> None:
        if not names:
            return
        self._each(
            "delete topics",
            lambda t: self.admin.delete_topics(names, operation_timeout=t, request_timeout=t),
            ignore=NotFound,  # already gone: deleting is idempotent
        )

    def topics(self, prefix: str) -> dict[str, int]:
        """Topics whose names start with prefix, with their partition counts."""
        metadata = self._metadata()
        return {name: len(t.partitions) for name, t in metadata.topics.items() if name.startswith(prefix)}

    def stored_bytes(self, partitions: Mapping[str, int]) -> int:
        return wire_admin.stored_bytes(self.connection, self.brokers(), partitions, self.retry_deadline_s)

    # -- groups

    def groups(self, prefix: str) -> dict[str, str]:
        """Consumer groups the cluster knows under the prefix, with their states."""

        def attempt(attempt: Attempt) -> Any:
            future = self.admin.list_consumer_groups(request_timeout=attempt.timeout)
            return _wait(future, "list groups", attempt.timeout)

        result = self._retrying("list groups", attempt)
        return {
            g.group_id: getattr(g.state, "name", str(g.state)).lower()
            for g in result.valid
            if g.group_id.startswith(prefix)
        }

    def delete_group(self, group_id: str) -> None:
        """Delete a group's committed offsets; a group the cluster never saw is not an error."""
        self._each(
            f"delete group {group_id}",
            lambda t: self.admin.delete_consumer_groups([group_id], request_timeout=t),
            ignore=NotFound,
        )
