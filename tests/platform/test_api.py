"""The HTTP surface: authentication, errors, plans, the OpenAPI document, bad input."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from eventyard.platform import naming
from tests.platform.conftest import provision, unique_app


def test_plans_are_heroku_like(api: TestClient) -> None:
    response = api.get("/v1/plans")
    assert response.status_code == 200
    plans = {plan["name"]: plan for plan in response.json()}
    assert {"basic-0", "basic-1", "basic-2"} <= set(plans)
    rates = [plans[f"basic-{i}"]["produce_byte_rate"] for i in range(3)]
    assert rates == sorted(rates) and rates[0] == 64 * 1024
    assert plans["basic-0"]["max_partitions"] == 240 and plans["basic-0"]["compaction_allowed"] is False
    for plan in plans.values():
        assert plan["retention_ms_min"] <= plan["default_retention_ms"] <= plan["retention_ms_max"]


def test_missing_or_wrong_token_is_401(api: TestClient) -> None:
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}):
        response = api.get("/v1/plans", headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["error"] == "unauthorized"
    assert (
        api.post(
            "/v1/addons", json={"app": "x-app", "plan": "tiny"}, headers={"Authorization": ""}
        ).status_code
        == 401
    )


def test_unknown_addon_is_404(api: TestClient) -> None:
    for method, path in (
        ("GET", "/v1/addons/no-such-addon"),
        ("DELETE", "/v1/addons/no-such-addon"),
        ("GET", "/v1/addons/no-such-addon/config"),
        ("GET", "/v1/addons/no-such-addon/topics"),
        ("POST", "/v1/addons/no-such-addon/groups"),
    ):
        response = api.request(method, path, json={"name": "g"} if method == "POST" else None)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"] == "not_found"


def test_bad_input_is_400(api: TestClient) -> None:
    cases = [
        {"app": "shop", "plan": "no-such-plan"},
        {"app": "Not An App!", "plan": "tiny"},
        {"app": "shop"},
        {"app": "shop", "plan": "tiny", "unexpected": 1},
        {"app": "shop", "plan": "tiny", "name": "x"},
    ]
    for body in cases:
        response = api.post("/v1/addons", json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"] == "bad_request" and response.json()["message"]
    response = api.post("/v1/addons", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400


def test_named_addon_conflicts(api: TestClient) -> None:
    name = f"kafka-{unique_app('named')}"
    first = api.post("/v1/addons", json={"app": unique_app(), "plan": "tiny", "name": name})
    assert first.status_code == 202 and first.json()["name"] == name
    second = api.post("/v1/addons", json={"app": unique_app(), "plan": "tiny", "name": name})
    assert second.status_code == 409 and second.json()["error"] == "conflict"


def test_openapi_document(api: TestClient) -> None:
    response = api.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    paths = spec["paths"]
    for path in (
        "/v1/plans",
        "/v1/addons",
        "/v1/addons/{addon}",
        "/v1/addons/{addon}/config",
        "/v1/addons/{addon}/attachments",
        "/v1/addons/{addon}/credentials/rotate",
        "/v1/addons/{addon}/topics/{topic}",
        "/v1/addons/{addon}/groups/{group}",
        "/v1/addons/{addon}/fail",
    ):
        assert path in paths, path
    create = paths["/v1/addons"]["post"]
    assert "202" in create["responses"] and "description" in create
    assert "422" in paths["/v1/addons/{addon}/topics"]["post"]["responses"]
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


def test_list_addons_by_app(api: TestClient) -> None:
    app = unique_app("lister")
    addon = provision(api, app=app)
    listed = api.get("/v1/addons", params={"app": app}).json()
    assert [a["name"] for a in listed] == [addon["name"]]
    assert addon["name"] in {a["name"] for a in api.get("/v1/addons").json()}


def test_names_with_a_trailing_newline_are_400(api: TestClient) -> None:
    # Regression (found by fuzzing): re's `$` matches before a final "\n", so "shop\n" passed as a name.
    for body in (
        {"app": "shop\n", "plan": "tiny"},
        {"app": "shop", "plan": "tiny", "name": f"kafka-{unique_app('nl')}\n"},
    ):
        response = api.post("/v1/addons", json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"] == "bad_request"
    name = provision(api)["name"]
    response = api.post(f"/v1/addons/{name}/attachments", json={"app": "second-app\n"})
    assert response.status_code == 400, response.text


def test_numbers_and_booleans_only_as_the_schema_types_them(api: TestClient) -> None:
    # Regression (found by fuzzing): pydantic's lax mode took `true` as 1 partition.
    name = provision(api)["name"]
    for body in (
        {"name": "lax", "partitions": True},
        {"name": "lax", "partitions": "3"},
        {"name": "lax", "compaction": "yes"},
    ):
        response = api.post(f"/v1/addons/{name}/topics", json=body)
        assert response.status_code == 400, (body, response.text)
    response = api.post(f"/v1/addons/{name}/topics", json={"name": "exact", "partitions": 2.0})
    assert response.status_code == 201, response.text  # 2.0 is an integer to JSON Schema
    assert response.json()["partitions"] == 2


def test_undeclared_method_is_405_with_allow(api: TestClient) -> None:
    # Regression (found by fuzzing): the error handler dropped the Allow header RFC 9110 requires.
    for method, path, allowed in (
        ("TRACE", "/v1/plans", {"GET"}),
        ("PUT", "/v1/addons/no-such-addon", {"GET", "PATCH", "DELETE"}),
    ):
        response = api.request(method, path)
        assert response.status_code == 405, (method, path)
        assert response.json() == {"error": "method_not_allowed", "message": "Method Not Allowed"}
        assert {m.strip() for m in response.headers["Allow"].split(",")} == allowed


def test_openapi_documents_the_input_rules(api: TestClient) -> None:
    # Regression (found by fuzzing): schema-valid names, plans and grace periods were answered 400.
    schemas = api.get("/openapi.json").json()["components"]["schemas"]
    plans = {plan["name"] for plan in api.get("/v1/plans").json()}
    for model in ("AddonIn", "AddonPatch"):
        assert set(schemas[model]["properties"]["plan"]["enum"]) == plans
    assert schemas["AddonIn"]["properties"]["app"]["pattern"] == naming.APP_PATTERN
    assert schemas["AttachmentIn"]["properties"]["app"]["pattern"] == naming.APP_PATTERN
    assert schemas["TopicIn"]["properties"]["name"]["pattern"] == naming.RESOURCE_PATTERN
    assert schemas["GroupIn"]["properties"]["name"]["pattern"] == naming.RESOURCE_PATTERN
    assert schemas["RotateIn"]["properties"]["grace_period_s"]["maximum"] == 7 * 24 * 3600
    pattern = re.compile(naming.RESOURCE_PATTERN)
    assert not pattern.fullmatch(".") and not pattern.fullmatch("..") and not pattern.fullmatch("x" * 201)
    assert all(pattern.fullmatch(n) for n in ("...", ".a", "a.", "x" * 200, "orders_v2-1"))
