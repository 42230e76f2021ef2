"""Property-based fuzzing of the control plane's HTTP API from its own OpenAPI document (schemathesis),
in-process against the real app over a real SASL broker.

Every operation gets generated requests, valid and invalid, authenticated with the operator token. The
checks: no 5xx (a 502 would mean the cluster failed, which it must not here), the status codes and the
bodies are the documented ones, and every error body is {"error": code, "message": text}. A seeded
add-on lets path parameters reach real resources as well as unknown ones."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation.feedback import FeedbackSources
from schemathesis.pytest._test_builder import build_operation_test
from schemathesis.python._constants.orchestrator import make_constants_value_source
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from eventyard.platform.api import create_app
from eventyard.platform.service import PlatformService
from eventyard.platform.settings import Settings
from tests.platform.conftest import TOKEN, provision, unique_app

# Never a real add-on: /fail on a real one could take the shared broker away from every other test.
MISSING_ADDON = "no-such-addon-fuzz"


def error_body_shape(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> bool | None:
    """Every error answer is {"error": code, "message": text} and nothing else."""
    if response.status_code < 400:
        return None
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error", "message"}, f"error body {body!r}"
    assert isinstance(body["error"], str) and body["error"], f"error code {body!r}"
    assert isinstance(body["message"], str) and body["message"], f"error message {body!r}"
    assert "Traceback" not in body["message"], body["message"]
    return None


# 400s for schema-valid bodies that depend on the state, which no schema can tell beforehand.
STATE_DEPENDENT_400 = ("replication must be between", "partitions can only grow")


def positive_data_accepted(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> bool | None:
    """Schema-valid requests are not refused as bad input (400): the OpenAPI says what is valid."""
    if response.status_code == 400 and any(m in response.json()["message"] for m in STATE_DEPENDENT_400):
        return None
    return positive_data_acceptance(ctx, response, case)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
    missing_required_header,
    unsupported_method,
    response_headers_conformance,
    positive_data_accepted,
    error_body_shape,
]


@pytest.fixture(scope="module")
def seeded(api: TestClient) -> dict[str, str]:
    """A provisioned add-on with a topic, a group and a second app; more of each for the DELETEs."""
    owner = unique_app("fuzz")
    addon = provision(api, plan="tiny", app=owner)["name"]
    reader = unique_app("reader")
    for path, body in (
        (f"/v1/addons/{addon}/topics", {"name": "orders", "partitions": 1}),
        (f"/v1/addons/{addon}/topics", {"name": "doomed", "partitions": 1}),
        (f"/v1/addons/{addon}/groups", {"name": "billing"}),
        (f"/v1/addons/{addon}/groups", {"name": "spent"}),
        (f"/v1/addons/{addon}/attachments", {"app": reader, "access": "read-only"}),
    ):
        response = api.post(path, json=body)
        assert response.status_code == 201, response.text
    doomed_addon = provision(api, plan="tiny")["name"]
    return {"addon": addon, "owner": owner, "reader": reader, "doomed_addon": doomed_addon}


def real_values(method: str, path: str, seeded: dict[str, str]) -> dict[str, list[str]]:
    """For each path parameter of an operation, the real resources it may name."""
    if path.endswith("/fail"):
        return {"addon": [MISSING_ADDON]}
    if method == "DELETE" and path == "/v1/addons/{addon}":
        return {"addon": [seeded["doomed_addon"]]}
    deleting = method == "DELETE"
    return {
        "addon": [seeded["addon"]],
        "topic": ["doomed"] if deleting else ["orders"],
        "group": ["spent"] if deleting else ["billing"],
        "app": [seeded["reader"], seeded["owner"]],
    }


@pytest.fixture(scope="module")
def fuzz_schema(
    platform_settings: Settings, service: PlatformService, seeded: dict[str, str]
) -> Iterator[schemathesis.BaseSchema]:
    app = create_app(platform_settings, service)
    config = schemathesis.Config.from_dict(
        {
            "auth": {"openapi": {"HTTPBearer": {"bearer": TOKEN}}},
            # Unknown query parameters are ignored, as HTTP APIs commonly do; not a contract violation.
            "generation": {"allow-extra-parameters": False},
            "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", 404, 409, 422]}},
        }
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)

    @schema.hook
    def flatmap_path_parameters(context: schemathesis.HookContext, path_parameters: Any) -> Any:
        """Mostly a real resource, else what was generated (mostly unknown: 404 or 400)."""
        operation = context.operation
        if operation is None or not isinstance(path_parameters, dict):
            return st.just(path_parameters)
        real = real_values(operation.method.upper(), operation.path, seeded)
        if operation.path.endswith("/fail"):
            return st.just({**path_parameters, **{k: v[0] for k, v in real.items()}})
        return st.fixed_dictionaries(
            {key: st.sampled_from([value, *real.get(key, []) * 3]) for key, value in path_parameters.items()}
        )

    yield schema


# schemathesis's own pytest integration (`from_fixture`) fails on pytest 9 (it sets a node's `_nodeid`),
# so each operation is a test of its own that builds the operation's Hypothesis test the way that
# integration does: the schema's examples, the coverage phase (boundaries, missing or wrong-typed fields,
# undeclared methods) and fuzzing, positive and negative.
OPERATIONS = [
    "GET /v1/plans",
    "POST /v1/addons",
    "GET /v1/addons",
    "GET /v1/addons/{addon}",
    "PATCH /v1/addons/{addon}",
    "DELETE /v1/addons/{addon}",
    "GET /v1/addons/{addon}/config",
    "POST /v1/addons/{addon}/attachments",
    "DELETE /v1/addons/{addon}/attachments/{app}",
    "POST /v1/addons/{addon}/credentials/rotate",
    "GET /v1/addons/{addon}/topics",
    "POST /v1/addons/{addon}/topics",
    "GET /v1/addons/{addon}/topics/{topic}",
    "PATCH /v1/addons/{addon}/topics/{topic}",
    "DELETE /v1/addons/{addon}/topics/{topic}",
    "GET /v1/addons/{addon}/groups",
    "POST /v1/addons/{addon}/groups",
    "DELETE /v1/addons/{addon}/groups/{group}",
    "POST /v1/addons/{addon}/fail",
]


def test_every_operation_is_fuzzed(fuzz_schema: schemathesis.BaseSchema) -> None:
    labels = {result.ok().label for result in fuzz_schema.get_all_operations()}
    assert labels == set(OPERATIONS)


@pytest.mark.parametrize("label", OPERATIONS)
def test_api_conforms_to_its_openapi(fuzz_schema: schemathesis.BaseSchema, label: str) -> None:
    method, path = label.split(" ", 1)
    operation = fuzz_schema[path][method]
    statuses: list[int] = []

    def fuzz(case: schemathesis.Case) -> None:
        if path.endswith("/fail") and isinstance(case.path_parameters, dict):
            # Also for the examples and coverage cases, which the path parameter hook does not see.
            case.path_parameters = {**case.path_parameters, "addon": MISSING_ADDON}
        statuses.append(case.call_and_validate(checks=CHECKS).status_code)

    test = build_operation_test(
        config=fuzz_schema.config,
        operation=operation,
        test_func=settings(
            max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )(fuzz),
        given_kwargs={},
        feedback=FeedbackSources(constants_value_source=make_constants_value_source(fuzz_schema)),
    )
    test()
    if "{addon}" in path and not path.endswith("/fail"):
        # Not only unknown add-ons (404): the seeded resources were reached too.
        assert set(statuses) - {401, 404}, (label, sorted(statuses))
