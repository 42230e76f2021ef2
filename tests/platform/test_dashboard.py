"""The dashboard's pages, served by the control plane's app against a real broker (the `api`
fixture's app): login by token, the add-ons page, an add-on's page, and that no secret shows."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from eventyard.platform.dashboard import COOKIE
from tests.platform.conftest import TOKEN, provision, unique_app

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def browser(api: TestClient) -> Iterator[TestClient]:
    """The same app, without the API's bearer header and with a cookie jar of its own."""
    client = TestClient(api.app, follow_redirects=False)
    yield client
    client.close()


@pytest.fixture(scope="module")
def addon(api: TestClient) -> dict[str, Any]:
    """An add-on with a topic, a group, a read-only attachment and a rotated-out credential."""
    body = provision(api, plan="basic-1")
    name = body["name"]
    created = api.post(
        f"/v1/addons/{name}/topics",
        json={"name": "orders", "partitions": 3, "retention_ms": 86_400_000, "compaction": True},
    )
    assert created.status_code == 201, created.text
    assert api.post(f"/v1/addons/{name}/groups", json={"name": "billing"}).status_code == 201
    attached = api.post(
        f"/v1/addons/{name}/attachments", json={"app": unique_app("reports"), "access": "read-only"}
    )
    assert attached.status_code == 201, attached.text
    old = api.get(f"/v1/addons/{name}/config").json()
    rotated = api.post(
        f"/v1/addons/{name}/credentials/rotate", json={"app": body["app"], "grace_period_s": 600}
    )
    assert rotated.status_code == 200, rotated.text
    return {
        **body,
        "reader": attached.json()["app"],
        "passwords": [
            old["KAFKA_PASSWORD"],
            rotated.json()["KAFKA_PASSWORD"],
            attached.json()["config"]["KAFKA_PASSWORD"],
        ],
    }


def log_in(browser: TestClient, token: str = TOKEN, next: str = "/") -> Any:
    return browser.post(
        "/login",
        content=f"token={token}&next={next}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )


def test_pages_need_the_token(browser: TestClient, addon: dict[str, Any]) -> None:
    for path in ("/", f"/addons/{addon['name']}"):
        response = browser.get(path)
        assert response.status_code == 303 and response.headers["location"].startswith("/login?next=")
    form = browser.get("/login")
    assert form.status_code == 200 and 'type="password"' in form.text

    refused = log_in(browser, token="not-the-token")
    assert refused.status_code == 401 and "not valid" in refused.text
    assert COOKIE not in browser.cookies
    browser.cookies.set(COOKIE, "forged")
    assert browser.get("/").headers["location"].startswith("/login")  # a wrong cookie is dropped


def test_login_sets_an_httponly_cookie_and_redirects_only_locally(browser: TestClient) -> None:
    response = log_in(browser, next="/addons/x")
    assert response.status_code == 303 and response.headers["location"] == "/addons/x"
    cookie = response.headers["set-cookie"]
    assert f"{COOKIE}=" in cookie and "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    assert log_in(browser, next="//evil.example/").headers["location"] == "/"
    assert log_in(browser, next="https://evil.example/").headers["location"] == "/"

    out = browser.post("/logout")
    assert out.status_code == 303 and COOKIE not in browser.cookies
    assert browser.get("/").status_code == 303


def test_token_in_the_query_once(browser: TestClient, addon: dict[str, Any]) -> None:
    response = browser.get(f"/addons/{addon['name']}?token={TOKEN}")
    assert response.status_code == 303
    assert response.headers["location"] == f"/addons/{addon['name']}"  # the token leaves the address
    page = browser.get(f"/addons/{addon['name']}")
    assert page.status_code == 200 and addon["name"] in page.text


def test_addons_page(browser: TestClient, addon: dict[str, Any]) -> None:
    log_in(browser)
    page = browser.get("/")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    row = _row_of(page.text, addon["name"])
    assert addon["app"] in row and "basic-1" in row and "available" in row and addon["prefix"] in row
    # usage against the plan's limits: 1 of 80 topics, 3 of 480 partitions
    assert re.search(r"Topics:</span>\s*1 / 80", row) and re.search(r"Partitions:</span>\s*3 / 480", row)
    assert "<script" not in page.text


def test_addon_page(browser: TestClient, addon: dict[str, Any]) -> None:
    log_in(browser)
    page = browser.get(f"/addons/{addon['name']}")
    assert page.status_code == 200
    text = page.text
    topic = _row_of(text, f"{addon['prefix']}orders")
    cells = re.findall(r"<td[^>]*>(.*?)</td>", topic, re.S)
    assert cells[0] == "orders" and cells[2] == "3" and cells[4] == "1d" and cells[5] == "yes"
    assert cells[6].endswith("B")  # the topic's size, from DescribeLogDirs
    assert f"{addon['prefix']}billing" in text
    reader = _row_of(text, addon["reader"])
    assert "read-only" in reader
    # the rotated-out credential, with its expiry, and the current one
    assert "rotated out" in text and "current" in text
    for password in addon["passwords"]:
        assert password not in text


def test_unknown_addon_is_a_404_page(browser: TestClient) -> None:
    log_in(browser)
    page = browser.get("/addons/kafka-nobody-here")
    assert page.status_code == 404 and "kafka-nobody-here" in page.text


def _row_of(html: str, needle: str) -> str:
    for row in re.findall(r"<tr>.*?</tr>", html, re.S):
        if needle in row:
            return str(row)
    raise AssertionError(f"no table row with {needle!r}")
