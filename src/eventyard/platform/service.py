"""The control plane's domain logic, independent of HTTP: add-ons and their life cycle, attachments,
credentials and their rotation, the config an app gets, and failure injection. Topics and groups
are in platform.resources, plan changes in platform.plan_changes (mixins over the same store and
cluster)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from eventyard.platform import naming, views
from eventyard.platform.cluster import ACCESS_LEVELS, READ_WRITE, ClusterAdmin
from eventyard.platform.errors import BadRequest, Conflict, NotFound, PlatformError
from eventyard.platform.plan_changes import PlanChangeMixin
from eventyard.platform.plans import Plan
from eventyard.platform.resources import ResourcesMixin
from eventyard.platform.settings import Settings
from eventyard.platform.store import Addon, Attachment, Credential, Store

log = logging.getLogger(__name__)

PROVISIONING = "provisioning"
AVAILABLE = "available"
FAILED = "failed"
DEPROVISIONING = "deprovisioning"
MAX_GRACE_S = 7 * 24 * 3600
MAX_FAILURE_S = 600


class PlatformService(ResourcesMixin, PlanChangeMixin):
    def __init__(
        self,
        settings: Settings,
        store: Store,
        cluster: ClusterAdmin,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.cluster = cluster
        self.clock = clock
        self._executor = ThreadPoolExecutor(settings.provision_workers, thread_name_prefix="provision")
        self._provisioning: dict[str, Future[None]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=False)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def lock(self, addon: str) -> threading.Lock:
        """Serialises the changes of one add-on, so that two requests cannot both pass a limit."""
        with self._locks_guard:
            return self._locks.setdefault(addon, threading.Lock())

    # -- plans and add-ons

    def plans(self) -> list[dict[str, Any]]:
        return [plan.to_json() for plan in self.settings.plans.values()]

    def plan(self, name: str) -> Plan:
        plan = self.settings.plans.get(name)
        if plan is None:
            raise BadRequest(f"unknown plan {name!r}: one of {', '.join(self.settings.plans)}")
        return plan

    def get(self, name: str) -> Addon:
        addon = self.store.addon(name)
        if addon is None:
            raise NotFound(f"no add-on named {name!r}")
        return addon

    def available(self, name: str) -> Addon:
        addon = self.get(name)
        if addon.state != AVAILABLE:
            raise Conflict(f"add-on {name} is {addon.state}" + (f": {addon.reason}" if addon.reason else ""))
        return addon

    def create_addon(self, app: str, plan_name: str, name: str | None = None) -> dict[str, Any]:
        """Record the add-on and start provisioning it in the background (state provisioning)."""
        naming.check_app(app)
        self.plan(plan_name)
        if name is not None:
            naming.check_addon(name)
        now = self.now_ms()
        for _ in range(20):  # generated names and prefixes rarely collide; retry when they do
            addon = Addon(
                name or naming.new_addon_name(),
                app,
                plan_name,
                naming.new_prefix(),
                PROVISIONING,
                None,
                False,
                now,
                now,
            )
            if self.store.insert_addon(addon, Attachment(addon.name, app, READ_WRITE, now)):
                break
            if name is not None and self.store.addon(name) is not None:
                raise Conflict(f"an add-on named {name!r} exists")
        else:
            raise Conflict("could not find a free add-on name and prefix")
        self._new_credential(addon, app, READ_WRITE)
        self._provisioning[addon.name] = self._executor.submit(self._provision, addon.name)
        return self.describe(addon.name, usage=False)

    def _provision(self, name: str) -> None:
        started = time.monotonic()
        try:
            addon = self.get(name)
            plan = self.plan(addon.plan)
            supported = self.cluster.set_tenant_limits(addon.prefix, plan.max_partitions, plan.capacity_bytes)
            for credential in self.store.credentials(name):
                self._install(credential, addon.prefix, plan)
            self.store.set_state(name, AVAILABLE, self.now_ms(), tenant_limits=supported)
            log.info("add-on %s available in %.2fs", name, time.monotonic() - started)
        except Exception as exc:
            log.exception("provisioning %s failed", name)
            reason = exc.message if isinstance(exc, PlatformError) else f"{type(exc).__name__}: {exc}"
            self.store.set_state(name, FAILED, self.now_ms(), reason=reason)

    def resume(self) -> list[str]:
        """Provision again the add-ons a stopped control plane left half-done (each step is
        idempotent: upserted users, ACLs and quotas); returns their names."""
        pending = [a.name for a in self.store.addons() if a.state == PROVISIONING]
        for name in pending:
            if name not in self._provisioning:
                self._provisioning[name] = self._executor.submit(self._provision, name)
        return pending

    def wait_provisioned(self, name: str, timeout: float = 60.0) -> Addon:
        future = self._provisioning.get(name)
        if future is not None:
            future.result(timeout)
        return self.get(name)

    def list_addons(self, app: str | None = None) -> list[dict[str, Any]]:
        return [views.addon(a, self.store.attachments(a.name)) for a in self.store.addons(app)]

    def describe(self, name: str, usage: bool = True) -> dict[str, Any]:
        addon = self.get(name)
        plan = self.plan(addon.plan)
        topics = self.store.topics(name)
        stored: int | None = None
        if usage and addon.state == AVAILABLE and topics:
            try:
                stored = self.cluster.stored_bytes({addon.prefix + t.name: t.partitions for t in topics})
            except PlatformError as exc:
                log.warning("usage of %s: %s", name, exc)
        return views.addon_detail(
            addon,
            plan,
            self.store.attachments(name),
            topics,
            self.store.groups(name),
            stored,
            self.store.plan_changes(name),
        )

    def delete_addon(self, name: str) -> dict[str, Any]:
        """Remove everything the add-on has on the cluster, then its records: state "deleted". When
        the cluster cannot be reached (or refuses), the add-on stays `deprovisioning` with the reason,
        and the reaper finishes the job once the cluster is back (each step is idempotent)."""
        future = self._provisioning.pop(name, None)
        if future is not None:
            future.result(60)
        self.get(name)
        with self.lock(name):
            addon = self.store.addon(name)
            if addon is None:  # the reaper finished it meanwhile
                return {"name": name, "state": "deleted"}
            self.store.set_state(name, DEPROVISIONING, self.now_ms(), reason=None)
            reason = self._deprovision(addon)
        if reason is not None:
            return {"name": name, "state": DEPROVISIONING, "reason": reason}
        return {"name": name, "state": "deleted"}

    def _deprovision(self, addon: Addon) -> str | None:
        """One try at the cleanup, the add-on's lock held: None when done (the records are gone),
        else why it must wait (kept as the add-on's reason)."""
        name = addon.name
        try:
            # Credentials first: from here on no client of the add-on gets in or is authorized.
            for credential in self.store.credentials(name):
                self._uninstall(credential)
            full_names = {addon.prefix + t.name for t in self.store.topics(name)}
            full_names |= set(self.cluster.topics(addon.prefix))
            self.cluster.delete_topics(sorted(full_names))
            for group in self.cluster.groups(addon.prefix):
                try:
                    self.cluster.delete_group(group)
                except PlatformError as exc:  # members not yet timed out: nobody can use it anyway
                    log.warning("deleting group %s: %s", group, exc)
            if addon.tenant_limits:
                self.cluster.set_tenant_limits(addon.prefix, None, None)
        except PlatformError as exc:
            reason = f"cleanup on the cluster to finish, retried in the background: {exc.message}"
            log.warning("deprovisioning %s: %s", name, exc.message)
            self.store.set_state(name, DEPROVISIONING, self.now_ms(), reason=reason)
            return reason
        self.store.delete_addon(name)
        log.info("add-on %s deprovisioned", name)
        return None

    def finish_deprovisioning(self) -> list[str]:
        """Try again the deletions the cluster held up (the reaper calls this); the add-ons done."""
        done = []
        for addon in self.store.addons():
            if addon.state != DEPROVISIONING:
                continue
            lock = self.lock(addon.name)
            if not lock.acquire(blocking=False):  # a DELETE request is at it right now
                continue
            try:
                current = self.store.addon(addon.name)
                if (
                    current is not None
                    and current.state == DEPROVISIONING
                    and self._deprovision(current) is None
                ):
                    done.append(addon.name)
            finally:
                lock.release()
        return done

    # -- credentials and attachments

    def _new_credential(self, addon: Addon, app: str, access: str) -> Credential:
        credential = Credential(
            naming.new_username(addon.prefix, app),
            addon.name,
            app,
            naming.new_password(),
            access,
            self.now_ms(),
            None,
        )
        self.store.insert_credential(credential)
        return credential

    def _install(self, credential: Credential, prefix: str, plan: Plan) -> None:
        """The credential's SCRAM user, its ACLs on the prefix, and its byte-rate quotas."""
        self.cluster.create_user(credential.username, credential.password)
        self.cluster.grant(credential.username, prefix, credential.access)
        self.cluster.set_user_quota(credential.username, plan.produce_byte_rate, plan.consume_byte_rate)

    def _uninstall(self, credential: Credential) -> None:
        self.cluster.delete_user(credential.username)  # first: no new sessions from here on
        self.cluster.revoke(credential.username)
        self.cluster.set_user_quota(credential.username, None, None)
        self.store.delete_credential(credential.username)

    def attach(self, name: str, app: str, access: str) -> dict[str, Any]:
        naming.check_app(app)
        if access not in ACCESS_LEVELS:
            raise BadRequest(f"access must be one of {', '.join(ACCESS_LEVELS)}")
        addon = self.available(name)
        with self.lock(name):
            if not self.store.insert_attachment(Attachment(name, app, access, self.now_ms())):
                raise Conflict(f"{app} is already attached to {name}")
            credential = self._new_credential(addon, app, access)
            try:
                self._install(credential, addon.prefix, self.plan(addon.plan))
            except PlatformError:
                self._uninstall(credential)
                self.store.delete_attachment(name, app)
                raise
        return {"addon": name, "app": app, "access": access, "config": self.config(name, app)}

    def detach(self, name: str, app: str) -> dict[str, Any]:
        addon = self.get(name)
        if self.store.attachment(name, app) is None:
            raise NotFound(f"{app} is not attached to {name}")
        if app == addon.app:
            raise Conflict(f"{app} owns {name}: delete the add-on instead")
        with self.lock(name):
            for credential in self.store.credentials(name, app):
                self._uninstall(credential)
            self.store.delete_attachment(name, app)
        return {"addon": name, "app": app, "state": "detached"}

    def config(self, name: str, app: str | None = None) -> dict[str, str]:
        """The environment variables that connect `app` (default: the owner) to the add-on."""
        addon = self.available(name)
        app = app or addon.app
        if self.store.attachment(name, app) is None:
            raise NotFound(f"{app} is not attached to {name}")
        credential = self.store.current_credential(name, app)
        if credential is None:
            raise Conflict(f"{app} has no current credential on {name}")
        return views.config(self.settings, addon, credential)

    def rotate(self, name: str, app: str | None = None, grace_period_s: int | None = None) -> dict[str, str]:
        """A new credential for the app now; the old ones keep working for the grace period."""
        grace = self.settings.default_grace_period_s if grace_period_s is None else grace_period_s
        if not 0 <= grace <= MAX_GRACE_S:
            raise BadRequest(f"grace_period_s must be between 0 and {MAX_GRACE_S}")
        addon = self.available(name)
        app = app or addon.app
        attachment = self.store.attachment(name, app)
        if attachment is None:
            raise NotFound(f"{app} is not attached to {name}")
        with self.lock(name):
            credential = self._new_credential(addon, app, attachment.access)
            try:
                self._install(credential, addon.prefix, self.plan(addon.plan))
            except PlatformError:  # the old credential stays the current one
                self._uninstall(credential)
                raise
            self.store.expire_credentials(name, app, self.now_ms() + grace * 1000, keep=credential.username)
        if grace == 0:
            self.reap()
        return self.config(name, app)

    def reap(self, now: float | None = None) -> list[str]:
        """Delete the credentials whose grace period has ended (users, ACLs, quotas); their names.
        Also finishes the deletions of add-ons that waited for the cluster."""
        for name in self.finish_deprovisioning():
            log.info("finished deprovisioning %s", name)
        now_ms = self.now_ms() if now is None else int(now * 1000)
        reaped = []
        for credential in self.store.expired_credentials(now_ms):
            try:
                self._uninstall(credential)
                reaped.append(credential.username)
            except PlatformError as exc:  # tried again on the next round
                log.warning("reaping %s: %s", credential.username, exc)
        return reaped

    # -- failure injection

    def fail(
        self, name: str, target: str, topic: str | None, partition: int | None, duration_s: float
    ) -> dict[str, Any]:
        addon = self.available(name)
        if not 0 < duration_s <= MAX_FAILURE_S:
            raise BadRequest(f"duration_s must be above 0 and at most {MAX_FAILURE_S}")
        try:
            if target == "broker":
                self.cluster.injector(addon.tenant_limits).fail_broker(duration_s)
                return {"target": target, "duration_s": duration_s}
            if target != "leader":
                raise BadRequest("target must be leader or broker")
            if topic is None:
                raise BadRequest("target leader needs a topic")
            stored = self.store.topic(name, topic)
            if stored is None:
                raise NotFound(f"no topic {topic!r} in {name}")
            index = partition or 0
            if not 0 <= index < stored.partitions:
                raise BadRequest(f"{topic} has partitions 0 to {stored.partitions - 1}")
            self.cluster.injector(addon.tenant_limits).fail_leader(addon.prefix + topic, index, duration_s)
        except NotImplementedError as exc:
            raise Conflict(str(exc)) from None
        return {"target": target, "topic": topic, "partition": index, "duration_s": duration_s}
