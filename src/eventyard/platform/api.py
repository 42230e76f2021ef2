"""The control plane's HTTP API (FastAPI): `create_app(settings)`; OpenAPI at /openapi.json.

Every /v1 call needs `Authorization: Bearer <operator token>`. Errors are {"error", "message"}:
400 bad input, 401 no or wrong token, 404 unknown, 409 conflict, 422 beyond the plan, 502 cluster."""

from __future__ import annotations

import hmac
import importlib
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import Scope

from eventyard.platform.errors import PlatformError, Unauthorized
from eventyard.platform.routes import register
from eventyard.platform.service import PlatformService
from eventyard.platform.settings import Settings
from eventyard.platform.wire_admin import Connection

log = logging.getLogger(__name__)
_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}


def admin_connection(settings: Settings) -> Connection:
    """The control plane's own connection to the cluster, as the settings describe it."""
    return Connection(
        settings.bootstrap,
        settings.admin_security_protocol,
        settings.admin_mechanism,
        settings.admin_user,
        settings.admin_password,
        str(settings.ca_file) if settings.ca_file else None,
    )


def build_service(settings: Settings) -> PlatformService:
    """The service over the store and cluster the settings name."""
    from eventyard.platform.cluster import ClusterAdmin
    from eventyard.platform.store import Store

    return PlatformService(settings, Store(settings.db_url), ClusterAdmin(admin_connection(settings)))


def _reaper(service: PlatformService, interval: float, stop: threading.Event) -> None:
    while not stop.wait(interval):
        try:
            reaped = service.reap()
            if reaped:
                log.info("reaped expired credentials: %s", ", ".join(reaped))
        except Exception:  # the next round tries again
            log.exception("reaper")


def create_app(settings: Settings, service: PlatformService | None = None) -> FastAPI:
    owns_service = service is None
    platform = service if service is not None else build_service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resumed = platform.resume()
        if resumed:
            log.info("resuming the provisioning of %s", ", ".join(resumed))
        stop = threading.Event()
        reaper = threading.Thread(
            target=_reaper, args=(platform, settings.reap_interval_s, stop), name="reaper", daemon=True
        )
        reaper.start()
        try:
            yield
        finally:
            stop.set()
            reaper.join(5)
            if owns_service:
                platform.close()
                platform.store.close()

    app = FastAPI(
        title="Eventyard control plane",
        version="1",
        description=(
            "Kafka add-ons on a shared cluster: plans, add-ons with a topic and group prefix, per-app "
            "credentials (SCRAM-SHA-512, prefixed ACLs, byte-rate quotas), rotation with a grace period, "
            "topics and consumer groups within the plan's limits, and failure injection. "
            "Every /v1 call needs `Authorization: Bearer <token>`."
        ),
        lifespan=lifespan,
    )
    app.state.service = platform
    app.state.settings = settings
    bearer = HTTPBearer(auto_error=False, description="The operator token (EVENTYARD_PLATFORM_TOKEN)")

    # A default rather than Annotated[...]: the annotation is a string here and `bearer` a local.
    def authorized(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
        given = credentials.credentials if credentials else ""
        if not given or not hmac.compare_digest(given.encode(), settings.token.encode()):
            raise Unauthorized("a valid bearer token is required")

    @app.exception_handler(PlatformError)
    async def platform_error(request: Request, exc: PlatformError) -> JSONResponse:
        return JSONResponse({"error": exc.code, "message": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'] if p != 'body')}: {error['msg']}"
            for error in exc.errors()
        )
        return JSONResponse(
            {"error": "bad_request", "message": problems or "invalid request"}, status_code=400
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # RFC 9110 wants every allowed method; Starlette names only those of the first matching route.
            headers["Allow"] = ", ".join(_allowed_methods(app, request.scope))
        return JSONResponse(
            {"error": code, "message": str(exc.detail)}, status_code=exc.status_code, headers=headers
        )

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, Any]:
        return {"ok": True}

    router = APIRouter(prefix="/v1", dependencies=[Depends(authorized)])
    register(router, platform)
    app.include_router(router)
    _document_plans(app, list(settings.plans))
    _mount_dashboard(app)
    return app


def _allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """The methods some route answers at the request's path (probed: routers may be nested)."""
    return [
        method
        for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
        if any(route.matches({**scope, "method": method})[0] == Match.FULL for route in app.router.routes)
    ]


def _document_plans(app: FastAPI, plans: list[str]) -> None:
    """The plan names are settings, not code: the OpenAPI document lists this app's as an enum."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            for model in ("AddonIn", "AddonPatch"):
                schema["components"]["schemas"][model]["properties"]["plan"]["enum"] = plans
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def _mount_dashboard(app: FastAPI) -> None:
    """The HTML dashboard (eventyard.platform.dashboard, built separately) when it is there."""
    try:
        module = importlib.import_module("eventyard.platform.dashboard")
    except ModuleNotFoundError as exc:
        if exc.name != "eventyard.platform.dashboard":
            raise
        return
    mount = getattr(module, "mount", None)
    if callable(mount):
        mount(app)
