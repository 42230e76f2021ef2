"""The web dashboard: server-rendered pages over the control plane's own HTTP API.

`router` serves `/` (the add-ons, with plan, state and usage against limits), `/addons/{name}`
(topics, consumer groups, attachments and credentials' expiry) and a login form. The pages read
the API in-process (an ASGI call into the same app) with the operator token the browser holds in
an HttpOnly cookie, so the dashboard sees exactly what the API lets that token see, and the API's
authentication is the only one. Nothing secret is rendered: attachments and credentials are
shown through an allow-list of fields.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from eventyard.cli.kafka_format import (
    format_amount,
    human_bytes,
    human_duration,
    show,
    usage_label,
    usage_rows,
)

router = APIRouter(include_in_schema=False)

COOKIE = "eventyard_platform_token"
_COOKIE_MAX_AGE = 8 * 3600
# Pages hold operational data: never cache them, never frame them, no scripts at all.
_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
# What of an attachment or credential a page may show: never a password.
_ATTACHMENT_FIELDS = ("app", "access")
_CREDENTIAL_FIELDS = ("app", "access", "username", "created_ms", "expires_ms")
# Topic sizes cost a DescribeLogDirs each: a page asks for at most this many.
_MAX_SIZED_TOPICS = 100


def _when(ms: Any) -> str:
    if not isinstance(ms, int | float) or isinstance(ms, bool):
        return "-"
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _percent(used: Any, limit: Any) -> int | None:
    numbers = (int, float)
    if not isinstance(used, numbers) or not isinstance(limit, numbers) or limit <= 0:
        return None
    return min(100, round(100 * used / limit))


_templates = Environment(
    loader=PackageLoader("eventyard.platform", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)
_templates.filters.update(
    bytes=human_bytes, duration=human_duration, show=show, when=_when, amount=lambda v, k: format_amount(k, v)
)
_templates.globals.update(percent=_percent, usage_rows=usage_rows, usage_label=usage_label)


def _page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = _templates.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


class _Unauthorized(Exception):
    pass


class _ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Api:
    """The control plane's API, called in-process with the browser's token."""

    def __init__(self, request: Request, token: str) -> None:
        transport = httpx.ASGITransport(app=request.app)
        self._http = httpx.AsyncClient(
            transport=transport,
            base_url="http://dashboard.invalid",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30.0,
        )

    async def __aenter__(self) -> _Api:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    async def get(self, path: str) -> Any:
        response = await self._http.get(path)
        if response.status_code == 401:
            raise _Unauthorized
        try:
            body = response.json()
        except ValueError:
            body = None
        if not response.is_success:
            message = body.get("message") if isinstance(body, dict) else None
            raise _ApiError(response.status_code, str(message or response.reason_phrase))
        return body


def _items(body: Any, key: str) -> list[dict[str, Any]]:
    if isinstance(body, dict):
        body = body.get(key, [])
    return [item for item in body or [] if isinstance(item, dict)]


def _safe_next(target: str | None) -> str:
    # Only paths of this site: "//host" or "https://..." would make the login an open redirect.
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _login_redirect(request: Request) -> RedirectResponse:
    response = RedirectResponse(f"/login?{urlencode({'next': request.url.path})}", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


def _set_token(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=_COOKIE_MAX_AGE,
        path="/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def _token_from_query(request: Request) -> RedirectResponse | None:
    """`?token=` once: keep it in the cookie and redirect to the same page without it."""
    token = request.query_params.get("token")
    if not token:
        return None
    rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
    target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
    response = RedirectResponse(target, status_code=303, headers={"Referrer-Policy": "no-referrer"})
    _set_token(request, response, token)
    return response


async def _render(request: Request, load: Any) -> Response:
    """Run `load(api)` with the browser's token and render what it returns, or the fitting error."""
    redirect = _token_from_query(request)
    if redirect is not None:
        return redirect
    token = request.cookies.get(COOKIE)
    if not token:
        return _login_redirect(request)
    try:
        async with _Api(request, token) as api:
            template, context = await load(api)
    except _Unauthorized:
        return _login_redirect(request)
    except _ApiError as exc:
        return _page("error.html", status=exc.status, status_code=exc.status, message=exc.message)
    return _page(template, **context)


@router.get("/", response_class=HTMLResponse)
async def index(request: Request) -> Response:
    async def load(api: _Api) -> tuple[str, dict[str, Any]]:
        addons = _items(await api.get("/v1/addons"), "addons")
        # The list may carry only a summary: fetch the details (usage) of those that lack it.
        missing = [a for a in addons if "usage" not in a and "limits" not in a]
        details = await asyncio.gather(
            *(api.get(f"/v1/addons/{quote(str(a['name']), safe='')}") for a in missing),
            return_exceptions=True,
        )
        for addon, detail in zip(missing, details, strict=True):
            if isinstance(detail, _Unauthorized):
                raise detail
            if isinstance(detail, dict):
                addon.update({k: v for k, v in detail.items() if k in ("limits", "usage")})
        return "index.html", {"addons": addons}

    return await _render(request, load)


@router.get("/addons/{name}", response_class=HTMLResponse)
async def addon_page(request: Request, name: str) -> Response:
    async def load(api: _Api) -> tuple[str, dict[str, Any]]:
        path = f"/v1/addons/{quote(name, safe='')}"
        addon = await api.get(path)
        topics_body, groups_body = await asyncio.gather(api.get(f"{path}/topics"), api.get(f"{path}/groups"))
        topics = _items(topics_body, "topics")
        await _add_sizes(api, path, topics)
        attachments = [
            {k: a[k] for k in _ATTACHMENT_FIELDS if k in a} for a in _items(addon.get("attachments"), "")
        ]
        credentials = [
            {k: c[k] for k in _CREDENTIAL_FIELDS if k in c}
            for c in _items(addon.get("credentials"), "") or await _credentials(request, name)
        ]
        context = {
            "addon": {k: v for k, v in addon.items() if k not in ("attachments", "credentials")},
            "topics": topics,
            "groups": _items(groups_body, "groups"),
            "attachments": attachments,
            "credentials": credentials,
        }
        return "addon.html", context

    return await _render(request, load)


async def _add_sizes(api: _Api, path: str, topics: list[dict[str, Any]]) -> None:
    """Each topic's stored bytes, which only the one-topic answer carries (the list stays cheap)."""
    wanted = [t for t in topics[:_MAX_SIZED_TOPICS] if t.get("stored_bytes") is None and "name" in t]
    answers = await asyncio.gather(
        *(api.get(f"{path}/topics/{quote(str(t['name']), safe='')}") for t in wanted), return_exceptions=True
    )
    for topic, answer in zip(wanted, answers, strict=True):
        if isinstance(answer, _Unauthorized):
            raise answer
        if isinstance(answer, dict):
            topic["stored_bytes"] = answer.get("stored_bytes")


async def _credentials(request: Request, name: str) -> list[dict[str, Any]]:
    """The add-on's credentials (current and rotated out) from the control plane's store, for their
    expiry: the API has no call for them. Called only after the API accepted the token."""
    store = getattr(getattr(request.app.state, "service", None), "store", None)
    if store is None or not hasattr(store, "credentials"):
        return []
    records = await run_in_threadpool(store.credentials, name)
    return [{k: getattr(c, k) for k in _CREDENTIAL_FIELDS if hasattr(c, k)} for c in records]


def mount(app: FastAPI) -> None:
    """Serve the dashboard from the control plane's app (api.create_app calls this)."""
    app.include_router(router)


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str = "/") -> Response:
    return _page("login.html", next=_safe_next(next), error=None)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    # A urlencoded form, read by hand: no multipart parser needed for two fields.
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()
    target = _safe_next((form.get("next") or ["/"])[0])
    if token:
        try:
            async with _Api(request, token) as api:
                await api.get("/v1/addons")
        except _Unauthorized:
            pass
        except _ApiError as exc:
            return _page("login.html", status=exc.status, next=target, error=exc.message)
        else:
            response = RedirectResponse(target, status_code=303)
            _set_token(request, response, token)
            return response
    return _page("login.html", status=401, next=target, error="That token is not valid.")


@router.post("/logout")
async def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response
