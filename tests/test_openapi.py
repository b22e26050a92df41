"""The served OpenAPI document: valid OpenAPI 3.1, exactly the app's /api/v1 routes, and
its examples and schemas true of what the real app answers."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from starlette.routing import Route
from starlette.testclient import TestClient

from campaigns.planning.enroll import enroll
from campaigns.planning.signups import Signup
from campaigns.web.api_tokens import add_token
from campaigns.web.app import create_app
from tests.helpers import utc

NOW = utc("2026-03-02T12:00")
TOKEN = "shared-token-for-openapi-tests"
SKIPPED_METHODS = {"HEAD"}  # Starlette answers HEAD for every GET by itself


@pytest.fixture
def client(store, clinic):
    enroll(store, clinic, Signup("staff@example.com", None, None, None, "staff"), now=NOW)
    app = create_app(store, clock=lambda: NOW, environ={"DRIPMAIL_API_TOKEN": TOKEN})
    with TestClient(app) as test_client:
        yield test_client


def served(client) -> dict:
    answer = client.get("/api/v1/openapi.json")  # no token needed
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    return answer.json()


def schema_of(document: dict, schema: dict) -> Draft202012Validator:
    """A validator for `schema`, its `$ref`s resolved inside the document."""
    return Draft202012Validator({**schema, "components": document["components"]})


def check(document: dict, schema: dict, value: object) -> None:
    errors = [e.message for e in schema_of(document, schema).iter_errors(value)]
    assert errors == [], (value, errors)


def test_the_document_is_valid_openapi_3_1(client):
    document = served(client)
    assert document["openapi"].startswith("3.1")
    validate(document)  # raises on any fault (openapi-spec-validator, OpenAPI 3.1 schema)


def test_the_document_lists_exactly_the_apps_api_routes(client):
    documented = {
        (path, method.upper()) for path, item in served(client)["paths"].items() for method in item
    }
    routed = {
        (route.path, method)
        for route in client.app.routes
        if isinstance(route, Route) and route.path.startswith("/api/v1")
        for method in route.methods or ()
        if method not in SKIPPED_METHODS
    }
    assert documented == routed
    assert ("/api/v1/enrollments/{id}", "DELETE") in routed  # the comparison is not vacuous


def test_every_example_fits_its_schema(client):
    document = served(client)
    seen = 0
    for item in document["paths"].values():
        for operation in item.values():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body and "example" in body:
                check(document, body["schema"], body["example"])
                seen += 1
            for answer in operation["responses"].values():
                content = answer.get("content", {}).get("application/json", {})
                if "example" in content:
                    check(document, content["schema"], content["example"])
                    seen += 1
            for parameter in operation.get("parameters", []):
                check(document, parameter["schema"], parameter["example"])
    assert seen >= 10


def _response_schema(document: dict, path: str, method: str, status: int) -> dict:
    responses = document["paths"][path][method]["responses"]
    assert str(status) in responses, (path, method, status)
    return responses[str(status)]["content"]["application/json"]["schema"]


def _request_example(document: dict, path: str, method: str):
    return document["paths"][path][method]["requestBody"]["content"]["application/json"]["example"]


def test_the_real_app_answers_the_examples_as_documented(client, store):
    """Each documented request example, sent to the app: the answer's status is documented
    and its body fits that status's schema."""
    document = served(client)
    headers = {"Authorization": f"Bearer {TOKEN}"}

    def call(method: str, path: str, url: str, **kwargs) -> dict:
        answer = client.request(method.upper(), url, headers=headers, **kwargs)
        check(document, _response_schema(document, path, method, answer.status_code), answer.json())
        return answer.json()

    sign_up = _request_example(document, "/api/v1/enrollments", "post")
    created = call("post", "/api/v1/enrollments", "/api/v1/enrollments", json=sign_up)
    repeated = call("post", "/api/v1/enrollments", "/api/v1/enrollments", json=sign_up)
    assert set(repeated) == {"enrollment_id", "campaign"}
    enrollment_id = created["enrollment_id"]
    email = document["paths"]["/api/v1/enrollments"]["get"]["parameters"][0]["example"]
    found = call("get", "/api/v1/enrollments", "/api/v1/enrollments", params={"email": email})
    [entry] = found["enrollments"]
    assert entry["enrollment_id"] == enrollment_id
    # The examples' ids are the ones this sequence makes (the staff sign-up is 1).
    assert enrollment_id == 2 and entry["contact_id"] == 2
    by_id = "/api/v1/enrollments/{id}"
    call("get", by_id, f"/api/v1/enrollments/{enrollment_id}")
    call("get", by_id, "/api/v1/enrollments/999999")
    tags = "/api/v1/contacts/{id}/tags"
    tagged = call(
        "post", tags, "/api/v1/contacts/2/tags", json=_request_example(document, tags, "post")
    )
    assert (
        tagged
        == document["paths"][tags]["post"]["responses"]["200"]["content"]["application/json"][
            "example"
        ]
    )
    call("post", tags, "/api/v1/contacts/999999/tags", json={"add": ["x"]})
    call("post", tags, "/api/v1/contacts/2/tags", json={"add": ["not a tag"]})
    event = _request_example(document, "/api/v1/events", "post")
    call("post", "/api/v1/events", "/api/v1/events", json=event)
    call("post", "/api/v1/events", "/api/v1/events", json={**event, "email": "nobody@example.com"})
    cancelled = call("delete", by_id, f"/api/v1/enrollments/{enrollment_id}")
    example = document["paths"][by_id]["delete"]["responses"]["200"]["content"]
    assert cancelled == example["application/json"]["example"]
    call("delete", by_id, "/api/v1/enrollments/0")
    # Refusals are documented too: no token, a token without the scope.
    headers = {}
    call("get", by_id, f"/api/v1/enrollments/{enrollment_id}")
    reader = add_token(store, "reader", "read", now=NOW)
    headers = {"Authorization": f"Bearer {reader}"}
    call("delete", by_id, f"/api/v1/enrollments/{enrollment_id}")


def test_each_documented_scope_is_the_one_the_app_enforces(client, store):
    """A token with only the documented scope passes the check; one with every other
    scope is refused with 403."""
    document = served(client)
    scopes = ("enroll", "events", "read")
    only = {scope: add_token(store, f"only-{scope}", scope, now=NOW) for scope in scopes}
    others = {
        scope: add_token(store, f"not-{scope}", ",".join(s for s in scopes if s != scope), now=NOW)
        for scope in scopes
    }
    checked = 0
    for path, item in document["paths"].items():
        url = path.replace("{id}", "1")
        for method, operation in item.items():
            if not operation["security"]:
                assert path == "/api/v1/openapi.json"
                continue
            [requirement] = operation["security"]
            [scope] = requirement["bearer"]
            assert scope == operation["x-scope"]
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            kwargs = {"json": body["example"]} if body else {}
            if method == "get" and path == "/api/v1/enrollments":
                kwargs = {"params": {"email": "pat@example.com"}}
            allowed = client.request(
                method.upper(), url, headers={"Authorization": f"Bearer {only[scope]}"}, **kwargs
            )
            assert allowed.status_code not in (401, 403), (method, path, allowed.text)
            refused = client.request(
                method.upper(), url, headers={"Authorization": f"Bearer {others[scope]}"}, **kwargs
            )
            assert refused.status_code == 403, (method, path)
            checked += 1
    assert checked == 6
