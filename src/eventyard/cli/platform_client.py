"""A typed HTTP client for the control plane's API v1 (see docs/platform.md).

Used by the developer CLI (`eventyard addons`, `eventyard kafka`) and by tests. Every failure the
API can report ({"error", "message"} bodies), an unreachable platform and a response that is not
JSON all raise PlatformError, so that callers show one line instead of a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

DEFAULT_URL = "http://127.0.0.1:8080"
# Long enough for a loaded control plane, short enough that a wrong address fails fast.
DEFAULT_TIMEOUT = 30.0

JSON = dict[str, Any]


class PlatformError(Exception):
    """The API said no (status, code and message from its error body), or could not be reached."""

    def __init__(self, status: int | None, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status  # None: no HTTP answer at all
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message


def _items(body: Any, *keys: str) -> list[JSON]:
    """A list answer, bare or wrapped in an object under one of `keys`."""
    if isinstance(body, list):
        return [item for item in body if isinstance(item, dict)]
    if isinstance(body, dict):
        for key in keys:
            value = body.get(key)
            if isinstance(value, list):
                return [item for item in value if isinstance(item, dict)]
    raise PlatformError(None, "bad_response", f"unexpected answer from the platform: {str(body)[:200]}")


class PlatformClient:
    """One connection pool to the control plane; use as a context manager or call close()."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        headers = {"Accept": "application/json", "User-Agent": "eventyard-cli"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    @classmethod
    def from_env(cls) -> PlatformClient:
        return cls(
            os.environ.get("EVENTYARD_PLATFORM_URL", DEFAULT_URL), os.environ.get("EVENTYARD_PLATFORM_TOKEN")
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PlatformClient:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- transport

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        """The decoded JSON body of a 2xx answer (None when empty); PlatformError otherwise."""
        try:
            response = self._http.request(method, path, json=json, params=params)
        except httpx.TimeoutException as exc:
            raise PlatformError(
                None, "timeout", f"the platform at {self.url} did not answer in time"
            ) from exc
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            raise PlatformError(
                None, "unreachable", f"cannot reach the platform at {self.url}: {reason}"
            ) from exc
        if response.is_success:
            if not response.content:
                return None
            try:
                return response.json()
            except ValueError as exc:
                raise PlatformError(
                    response.status_code, "bad_response", f"{method} {path}: the answer is not JSON"
                ) from exc
        raise self._error(response)

    def _error(self, response: httpx.Response) -> PlatformError:
        code, message = "", ""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            code = str(body.get("error") or "")
            raw = body.get("message") or body.get("detail") or ""
            # FastAPI's own validation errors carry a list of problems under "detail".
            message = raw if isinstance(raw, str) else "; ".join(_detail(item) for item in raw)
        status = response.status_code
        if status == 401:
            code = code or "unauthorized"
            message = message or "the platform refused the token (set --token or EVENTYARD_PLATFORM_TOKEN)"
        return PlatformError(
            status, code or f"http_{status}", message or f"{response.reason_phrase} ({status})"
        )

    # -- plans and add-ons

    def plans(self) -> list[JSON]:
        return _items(self.request("GET", "/v1/plans"), "plans")

    def create_addon(self, app: str, plan: str, name: str | None = None) -> JSON:
        body: JSON = {"app": app, "plan": plan}
        if name:
            body["name"] = name
        result: JSON = self.request("POST", "/v1/addons", json=body)
        return result

    def addons(self, app: str | None = None) -> list[JSON]:
        params = {"app": app} if app else None
        return _items(self.request("GET", "/v1/addons", params=params), "addons")

    def addon(self, addon: str) -> JSON:
        result: JSON = self.request("GET", f"/v1/addons/{_seg(addon)}")
        return result

    def change_plan(self, addon: str, plan: str) -> JSON:
        """Move the add-on to another plan (an upgrade or a downgrade); the add-on as it is now."""
        result: JSON = self.request("PATCH", f"/v1/addons/{_seg(addon)}", json={"plan": plan})
        return result

    def destroy_addon(self, addon: str) -> JSON:
        """State "deleted", or "deprovisioning" when the cleanup waits for the cluster."""
        result = self.request("DELETE", f"/v1/addons/{_seg(addon)}")
        return result if isinstance(result, dict) else {"name": addon, "state": "deleted"}

    def config(self, addon: str, app: str | None = None) -> dict[str, str]:
        params = {"app": app} if app else None
        body = self.request("GET", f"/v1/addons/{_seg(addon)}/config", params=params)
        if isinstance(body, dict) and isinstance(body.get("config"), dict):
            body = body["config"]
        return {str(k): str(v) for k, v in (body or {}).items() if v is not None}

    def attach(self, addon: str, app: str, access: str = "read-write") -> JSON:
        body = {"app": app, "access": access}
        result: JSON = self.request("POST", f"/v1/addons/{_seg(addon)}/attachments", json=body)
        return result

    def detach(self, addon: str, app: str) -> None:
        self.request("DELETE", f"/v1/addons/{_seg(addon)}/attachments/{_seg(app)}")

    def rotate_credentials(self, addon: str, app: str, grace_period_s: int | None = None) -> JSON:
        body: JSON = {"app": app}
        if grace_period_s is not None:
            body["grace_period_s"] = grace_period_s
        result: JSON = self.request("POST", f"/v1/addons/{_seg(addon)}/credentials/rotate", json=body)
        return result

    # -- topics

    def topics(self, addon: str) -> list[JSON]:
        return _items(self.request("GET", f"/v1/addons/{_seg(addon)}/topics"), "topics")

    def topic(self, addon: str, topic: str) -> JSON:
        result: JSON = self.request("GET", f"/v1/addons/{_seg(addon)}/topics/{_seg(topic)}")
        return result

    def create_topic(
        self,
        addon: str,
        name: str,
        *,
        partitions: int | None = None,
        retention_ms: int | None = None,
        compaction: bool | None = None,
        replication: int | None = None,
    ) -> JSON:
        body: JSON = {"name": name}
        optional = {
            "partitions": partitions,
            "retention_ms": retention_ms,
            "compaction": compaction,
            "replication": replication,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        result: JSON = self.request("POST", f"/v1/addons/{_seg(addon)}/topics", json=body)
        return result

    def update_topic(
        self,
        addon: str,
        topic: str,
        *,
        retention_ms: int | None = None,
        compaction: bool | None = None,
        partitions: int | None = None,
    ) -> JSON:
        changes = {"retention_ms": retention_ms, "compaction": compaction, "partitions": partitions}
        body = {k: v for k, v in changes.items() if v is not None}
        result: JSON = self.request("PATCH", f"/v1/addons/{_seg(addon)}/topics/{_seg(topic)}", json=body)
        return result

    def destroy_topic(self, addon: str, topic: str) -> None:
        self.request("DELETE", f"/v1/addons/{_seg(addon)}/topics/{_seg(topic)}")

    # -- consumer groups

    def groups(self, addon: str) -> list[JSON]:
        return _items(self.request("GET", f"/v1/addons/{_seg(addon)}/groups"), "groups")

    def create_group(self, addon: str, name: str) -> JSON:
        result: JSON = self.request("POST", f"/v1/addons/{_seg(addon)}/groups", json={"name": name})
        return result

    def destroy_group(self, addon: str, name: str) -> None:
        self.request("DELETE", f"/v1/addons/{_seg(addon)}/groups/{_seg(name)}")

    # -- failure rehearsal

    def fail(
        self,
        addon: str,
        target: str,
        duration_s: float,
        topic: str | None = None,
        partition: int | None = None,
    ) -> JSON:
        body: JSON = {"target": target, "duration_s": duration_s}
        if topic is not None:
            body["topic"] = topic
        if partition is not None:
            body["partition"] = partition
        result: JSON = self.request("POST", f"/v1/addons/{_seg(addon)}/fail", json=body) or {}
        return result


def _seg(value: str) -> str:
    """One URL path segment: a name with '/' or '?' must not change the route."""
    return quote(value, safe="")


def _detail(item: Any) -> str:
    if isinstance(item, dict):
        where = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
        return f"{where}: {item.get('msg', '')}" if where else str(item.get("msg", item))
    return str(item)
