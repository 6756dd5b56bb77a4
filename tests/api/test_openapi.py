"""GET /openapi.json: an OpenAPI 3.1 document of every route, generated from the models that
validate requests (the live check of answers against it is tests/e2e/test_hostile_http.py)."""

import re

import falcon.inspect
from falcon import testing

from api.app import create_app
from service.client import Warren


def test_the_document_is_openapi_3_1_and_open_without_a_token(settings, engine, clean):
    warren = Warren(settings.model_copy(update={"api_tokens": ["secret"]}), engine=engine)
    client = testing.TestClient(create_app(warren=warren))
    try:
        response = client.simulate_get("/openapi.json")
        assert client.simulate_get("/jobs").status_code == 401
    finally:
        warren.publisher.close()

    assert response.status_code == 200
    assert response.json["openapi"] == "3.1.0"


def test_every_route_and_method_is_described(client):  # HEAD is GET's, as RFC 9110 says
    document = client.simulate_get("/openapi.json").json
    for route in falcon.inspect.inspect_routes(client.app):
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        assert path in document["paths"], path
        methods = {m.method.lower() for m in route.methods if m.internal is False} - {"head"}
        assert methods <= set(document["paths"][path]), (path, methods)


def test_enqueue_bodies_are_the_job_types_payload_models(client, warren):
    document = client.simulate_get("/openapi.json").json
    schemas = document["components"]["schemas"]
    send_email = schemas["Enqueue.send-email"]

    assert send_email["properties"]["type"] == {"const": "send-email"}
    assert send_email["additionalProperties"] is False
    assert "to" in _resolved(schemas, "Payload.send-email")["properties"]
    variants = document["paths"]["/jobs"]["post"]["requestBody"]["content"]["application/json"]
    assert len(variants["schema"]["anyOf"]) == len(warren.registry.names())


def test_query_parameters_are_the_query_models_fields(client):
    document = client.simulate_get("/openapi.json").json
    jobs = {p["name"]: p["schema"] for p in document["paths"]["/jobs"]["get"]["parameters"]}
    dlq = {p["name"]: p["schema"] for p in document["paths"]["/dlq"]["get"]["parameters"]}

    assert jobs["limit"] == {"type": "integer", "minimum": 1, "maximum": 500}
    assert set(jobs) >= {"status", "type", "priority", "createdAfter", "cursor", "offset"}
    assert dlq["before"]["maximum"] == 2**63 - 1


def _resolved(schemas: dict, name: str) -> dict:
    schema = schemas[name]
    while "$ref" in schema:
        schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_each_guarded_operation_names_the_token_scope_it_needs(client):
    paths = client.simulate_get("/openapi.json").json["paths"]

    assert paths["/jobs"]["get"]["security"] == [{}, {"bearer": ["read"]}]
    assert paths["/jobs"]["post"]["security"] == [{}, {"bearer": ["write"]}]
    assert paths["/jobs/cancel"]["post"]["security"] == [{}, {"bearer": ["write"]}]
    assert paths["/queues/{tier}/pause"]["post"]["security"] == [{}, {"bearer": ["admin"]}]
    assert paths["/dlq/replay"]["post"]["security"] == [{}, {"bearer": ["admin"]}]
    assert paths["/health"]["get"]["security"] == []
