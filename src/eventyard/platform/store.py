"""The control plane's own store (eventyard.toolkit.sql: SQLite by default, PostgreSQL by URL):
add-ons, credentials, attachments, topics and groups. Times are integral milliseconds since the
epoch. Credentials keep their passwords as given: the control plane hands them to apps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eventyard.toolkit.sql import Database, Row, Transaction, connect

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS platform_addons (
        name TEXT PRIMARY KEY, app TEXT NOT NULL, plan TEXT NOT NULL, prefix TEXT NOT NULL UNIQUE,
        state TEXT NOT NULL, reason TEXT, tenant_limits INTEGER NOT NULL DEFAULT 0,
        created_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS platform_attachments (
        addon TEXT NOT NULL, app TEXT NOT NULL, access TEXT NOT NULL, created_ms BIGINT NOT NULL,
        PRIMARY KEY (addon, app))""",
    """CREATE TABLE IF NOT EXISTS platform_credentials (
        username TEXT PRIMARY KEY, addon TEXT NOT NULL, app TEXT NOT NULL, password TEXT NOT NULL,
        access TEXT NOT NULL, created_ms BIGINT NOT NULL, expires_ms BIGINT)""",
    """CREATE TABLE IF NOT EXISTS platform_topics (
        addon TEXT NOT NULL, name TEXT NOT NULL, partitions INTEGER NOT NULL,
        replication INTEGER NOT NULL, retention_ms BIGINT NOT NULL, compaction INTEGER NOT NULL,
        created_ms BIGINT NOT NULL, PRIMARY KEY (addon, name))""",
    """CREATE TABLE IF NOT EXISTS platform_groups (
        addon TEXT NOT NULL, name TEXT NOT NULL, created_ms BIGINT NOT NULL, PRIMARY KEY (addon, name))""",
    """CREATE TABLE IF NOT EXISTS platform_plan_changes (
        addon TEXT NOT NULL, from_plan TEXT NOT NULL, to_plan TEXT NOT NULL, changed_ms BIGINT NOT NULL)""",
)


@dataclass(frozen=True, slots=True)
class Addon:
    name: str
    app: str  # the owning app
    plan: str
    prefix: str  # every topic and group of the add-on starts with it, e.g. "wild-owl-4821."
    state: str  # provisioning, available, failed, deprovisioning
    reason: str | None
    tenant_limits: bool  # the cluster enforces the plan's partition and storage caps itself
    created_ms: int
    updated_ms: int


@dataclass(frozen=True, slots=True)
class PlanChange:
    addon: str
    from_plan: str
    to_plan: str
    changed_ms: int


@dataclass(frozen=True, slots=True)
class Attachment:
    addon: str
    app: str
    access: str  # read-write or read-only
    created_ms: int


@dataclass(frozen=True, slots=True)
class Credential:
    username: str
    addon: str
    app: str
    password: str
    access: str
    created_ms: int
    expires_ms: int | None  # None: current; else valid until then (rotated out, in its grace period)


@dataclass(frozen=True, slots=True)
class Topic:
    addon: str
    name: str  # without the prefix
    partitions: int
    replication: int
    retention_ms: int
    compaction: bool
    created_ms: int


@dataclass(frozen=True, slots=True)
class Group:
    addon: str
    name: str  # without the prefix
    created_ms: int


def _addon(row: Row) -> Addon:
    return Addon(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]), int(row[7]), int(row[8]))


def _credential(row: Row) -> Credential:
    expires = None if row[6] is None else int(row[6])
    return Credential(row[0], row[1], row[2], row[3], row[4], int(row[5]), expires)


def _topic(row: Row) -> Topic:
    return Topic(row[0], row[1], int(row[2]), int(row[3]), int(row[4]), bool(row[5]), int(row[6]))


_ADDON_COLUMNS = "name, app, plan, prefix, state, reason, tenant_limits, created_ms, updated_ms"
_CREDENTIAL_COLUMNS = "username, addon, app, password, access, created_ms, expires_ms"
_TOPIC_COLUMNS = "addon, name, partitions, replication, retention_ms, compaction, created_ms"


class Store:
    def __init__(self, url_or_db: str | Database) -> None:
        self.db = connect(url_or_db) if isinstance(url_or_db, str) else url_or_db
        with self.db.transaction() as tx:
            for statement in SCHEMA:
                tx.execute(statement)

    def close(self) -> None:
        self.db.close()

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
        with self.db.transaction() as tx:
            return tx.query(sql, params)

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        with self.db.transaction() as tx:
            return tx.execute(sql, params)

    # -- add-ons

    def insert_addon(self, addon: Addon, attachment: Attachment) -> bool:
        """Record a new add-on and its owner's attachment; False if the name or prefix is taken."""
        with self.db.transaction() as tx:
            taken = tx.query(
                "SELECT 1 FROM platform_addons WHERE name = ? OR prefix = ?", (addon.name, addon.prefix)
            )
            if taken:
                return False
            tx.execute(
                f"INSERT INTO platform_addons ({_ADDON_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (addon.name, addon.app, addon.plan, addon.prefix, addon.state, addon.reason,
                 int(addon.tenant_limits), addon.created_ms, addon.updated_ms),
            )  # fmt: skip
            _insert_attachment(tx, attachment)
        return True

    def addon(self, name: str) -> Addon | None:
        rows = self._query(f"SELECT {_ADDON_COLUMNS} FROM platform_addons WHERE name = ?", (name,))
        return _addon(rows[0]) if rows else None

    def addons(self, app: str | None = None) -> list[Addon]:
        if app is None:
            rows = self._query(f"SELECT {_ADDON_COLUMNS} FROM platform_addons ORDER BY name")
        else:
            rows = self._query(
                f"SELECT {_ADDON_COLUMNS} FROM platform_addons WHERE name IN "
                "(SELECT addon FROM platform_attachments WHERE app = ?) ORDER BY name",
                (app,),
            )
        return [_addon(row) for row in rows]

    def set_state(
        self, name: str, state: str, now_ms: int, reason: str | None = None, tenant_limits: bool | None = None
    ) -> None:
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE platform_addons SET state = ?, reason = ?, updated_ms = ? WHERE name = ?",
                (state, reason, now_ms, name),
            )
            if tenant_limits is not None:
                tx.execute(
                    "UPDATE platform_addons SET tenant_limits = ? WHERE name = ?", (int(tenant_limits), name)
                )

    def change_plan(self, name: str, from_plan: str, to_plan: str, now_ms: int) -> None:
        """The add-on's new plan and an entry in its plan history, together."""
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE platform_addons SET plan = ?, updated_ms = ? WHERE name = ?", (to_plan, now_ms, name)
            )
            tx.execute(
                "INSERT INTO platform_plan_changes (addon, from_plan, to_plan, changed_ms) "
                "VALUES (?, ?, ?, ?)",
                (name, from_plan, to_plan, now_ms),
            )

    def plan_changes(self, addon: str) -> list[PlanChange]:
        """Oldest first."""
        rows = self._query(
            "SELECT addon, from_plan, to_plan, changed_ms FROM platform_plan_changes "
            "WHERE addon = ? ORDER BY changed_ms",
            (addon,),
        )
        return [PlanChange(r[0], r[1], r[2], int(r[3])) for r in rows]

    def delete_addon(self, name: str) -> None:
        with self.db.transaction() as tx:
            for table in (
                "platform_attachments",
                "platform_credentials",
                "platform_topics",
                "platform_groups",
                "platform_plan_changes",
            ):
                tx.execute(f"DELETE FROM {table} WHERE addon = ?", (name,))
            tx.execute("DELETE FROM platform_addons WHERE name = ?", (name,))

    # -- attachments

    def attachments(self, addon: str) -> list[Attachment]:
        rows = self._query(
            "SELECT addon, app, access, created_ms FROM platform_attachments "
            "WHERE addon = ? ORDER BY created_ms, app",
            (addon,),
        )
        return [Attachment(r[0], r[1], r[2], int(r[3])) for r in rows]

    def attachment(self, addon: str, app: str) -> Attachment | None:
        return next((a for a in self.attachments(addon) if a.app == app), None)

    def insert_attachment(self, attachment: Attachment) -> bool:
        with self.db.transaction() as tx:
            if tx.query(
                "SELECT 1 FROM platform_attachments WHERE addon = ? AND app = ?",
                (attachment.addon, attachment.app),
            ):
                return False
            _insert_attachment(tx, attachment)
        return True

    def delete_attachment(self, addon: str, app: str) -> None:
        self._execute("DELETE FROM platform_attachments WHERE addon = ? AND app = ?", (addon, app))

    # -- credentials

    def insert_credential(self, credential: Credential) -> None:
        self._execute(
            f"INSERT INTO platform_credentials ({_CREDENTIAL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (credential.username, credential.addon, credential.app, credential.password, credential.access,
             credential.created_ms, credential.expires_ms),
        )  # fmt: skip

    def credentials(self, addon: str, app: str | None = None) -> list[Credential]:
        sql = f"SELECT {_CREDENTIAL_COLUMNS} FROM platform_credentials WHERE addon = ?"
        params: tuple[Any, ...] = (addon,)
        if app is not None:
            sql += " AND app = ?"
            params += (app,)
        return [_credential(row) for row in self._query(sql + " ORDER BY created_ms, username", params)]

    def current_credential(self, addon: str, app: str) -> Credential | None:
        current = [c for c in self.credentials(addon, app) if c.expires_ms is None]
        return current[-1] if current else None

    def expire_credentials(self, addon: str, app: str, expires_ms: int, keep: str) -> None:
        """Give every current credential of the app but `keep` an end (its grace period)."""
        self._execute(
            "UPDATE platform_credentials SET expires_ms = ? "
            "WHERE addon = ? AND app = ? AND username <> ? AND expires_ms IS NULL",
            (expires_ms, addon, app, keep),
        )

    def expired_credentials(self, now_ms: int) -> list[Credential]:
        rows = self._query(
            f"SELECT {_CREDENTIAL_COLUMNS} FROM platform_credentials "
            "WHERE expires_ms IS NOT NULL AND expires_ms <= ?",
            (now_ms,),
        )
        return [_credential(row) for row in rows]

    def delete_credential(self, username: str) -> None:
        self._execute("DELETE FROM platform_credentials WHERE username = ?", (username,))

    # -- topics

    def topics(self, addon: str) -> list[Topic]:
        rows = self._query(
            f"SELECT {_TOPIC_COLUMNS} FROM platform_topics WHERE addon = ? ORDER BY name", (addon,)
        )
        return [_topic(row) for row in rows]

    def topic(self, addon: str, name: str) -> Topic | None:
        rows = self._query(
            f"SELECT {_TOPIC_COLUMNS} FROM platform_topics WHERE addon = ? AND name = ?", (addon, name)
        )
        return _topic(rows[0]) if rows else None

    def save_topic(self, topic: Topic) -> None:
        """Insert or replace (after a retune) one topic."""
        self._execute(
            f"INSERT INTO platform_topics ({_TOPIC_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (addon, name) DO UPDATE SET partitions = excluded.partitions, "
            "replication = excluded.replication, retention_ms = excluded.retention_ms, "
            "compaction = excluded.compaction",
            (topic.addon, topic.name, topic.partitions, topic.replication, topic.retention_ms,
             int(topic.compaction), topic.created_ms),
        )  # fmt: skip

    def delete_topic(self, addon: str, name: str) -> None:
        self._execute("DELETE FROM platform_topics WHERE addon = ? AND name = ?", (addon, name))

    # -- groups

    def groups(self, addon: str) -> list[Group]:
        rows = self._query(
            "SELECT addon, name, created_ms FROM platform_groups WHERE addon = ? ORDER BY name", (addon,)
        )
        return [Group(r[0], r[1], int(r[2])) for r in rows]

    def insert_group(self, group: Group) -> bool:
        with self.db.transaction() as tx:
            if tx.query(
                "SELECT 1 FROM platform_groups WHERE addon = ? AND name = ?", (group.addon, group.name)
            ):
                return False
            tx.execute(
                "INSERT INTO platform_groups (addon, name, created_ms) VALUES (?, ?, ?)",
                (group.addon, group.name, group.created_ms),
            )
        return True

    def delete_group(self, addon: str, name: str) -> bool:
        return self._execute("DELETE FROM platform_groups WHERE addon = ? AND name = ?", (addon, name)) > 0


def _insert_attachment(tx: Transaction, attachment: Attachment) -> None:
    tx.execute(
        "INSERT INTO platform_attachments (addon, app, access, created_ms) VALUES (?, ?, ?, ?)",
        (attachment.addon, attachment.app, attachment.access, attachment.created_ms),
    )
