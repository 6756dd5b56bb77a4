"""`GET /openapi.json`: an OpenAPI 3.1 document of every route, generated, never written.

Request bodies and query strings are described by the very pydantic models that validate them
(`EnqueueRequest` with each registered job type's payload model, `RescheduleRequest`,
`SelectionBody`, `JobQuery`, `DeadLetterQuery`); answers by `api.shapes`. The document is
built once per app, from the job types that app loaded.
"""

import copy
from typing import Any

import falcon
from pydantic import BaseModel, TypeAdapter

from api import shapes
from api.auth import Tokens
from api.embeddings import SearchQuery
from api.ui.document import paths as ui_paths
from service.broker import TIERS
from service.client import MAX_BATCH
from service.deadletters import DeadLetterQuery, SelectionBody
from service.enqueue import EnqueueRequest
from service.queries import PAGING, JobQuery
from service.registry import JobType, Registry
from service.reschedule import RescheduleRequest
from service.schedules import ScheduleFields, ScheduleRequest

REF = "#/components/schemas/{model}"
JSON = "application/json"


def document(registry: Registry, title: str = "Warren") -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API serving `registry`'s job types."""
    job_types = [registry.get(name) for name in registry.names()]  # by name: one document
    schemas = _component_schemas(job_types)
    enqueue = {"anyOf": [_ref(f"Enqueue.{job.name}") for job in job_types]}
    for job in job_types:
        schemas[f"Enqueue.{job.name}"] = _enqueue_variant(schemas["EnqueueRequest"], job)
    schemas["BulkRequest"] = _bulk_request()
    schemas["Batch"] = {
        "type": "object",
        "properties": {
            "jobs": {"type": "array", "items": enqueue, "minItems": 1, "maxItems": MAX_BATCH}
        },
        "required": ["jobs"],
        "additionalProperties": False,
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": "1",
            "description": "Background jobs on RabbitMQ and PostgreSQL. Every error is "
            "`{success: false, error: {code, message, details}}` with a stable code.",
        },
        "paths": _with_scopes(_paths(enqueue, [job.name for job in job_types])),
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        # A token is needed only when WARREN_API_TOKENS is set.
        "security": [{}, {"bearer": []}],
    }


def _with_scopes(paths: dict[str, Any]) -> dict[str, Any]:
    """Each guarded operation names the token scope it needs (`api.auth`), as an OpenAPI 3.1
    role of the bearer scheme; a token stays optional, as it is without WARREN_API_TOKENS."""
    for path, item in paths.items():
        for method, operation in item.items():
            if method == "parameters" or "security" in operation:
                continue
            scope = Tokens.required_scope(method, path).name.lower()
            operation["security"] = [{}, {"bearer": [scope]}]
    return paths


def _component_schemas(job_types: list[JobType]) -> dict[str, Any]:
    """Every model's schema under components, by the names `_paths` refers to."""
    adapters = {name: TypeAdapter(model) for name, model in _shape_models().items()}
    adapters |= {
        "EnqueueRequest": TypeAdapter(EnqueueRequest),
        "RescheduleRequest": TypeAdapter(RescheduleRequest),
        "ScheduleRequest": TypeAdapter(ScheduleRequest),
        "ScheduleChange": TypeAdapter(ScheduleFields),
        "Selection": SelectionBody,
        **{f"Payload.{job.name}": TypeAdapter(job.payload) for job in job_types},
    }
    keys, defs = TypeAdapter.json_schemas(
        [(name, "validation", adapter) for name, adapter in adapters.items()], ref_template=REF
    )
    schemas = dict(defs.get("$defs", {}))
    for (name, _), schema in keys.items():
        if schema != _ref(name):  # a union, or a model pydantic named otherwise
            schemas[name] = schema
    return schemas


def _shape_models() -> dict[str, type[BaseModel]]:
    return {
        name: value
        for name, value in vars(shapes).items()
        if isinstance(value, type) and issubclass(value, shapes.Shape) and value is not shapes.Shape
    }


def _enqueue_variant(request: dict[str, Any], job: JobType) -> dict[str, Any]:
    """`EnqueueRequest` for one job type: its `type` fixed, its `payload` that type's model."""
    variant = copy.deepcopy(request)
    variant["title"] = f"Enqueue {job.name}"
    variant["properties"]["type"] = {"const": job.name}
    variant["properties"]["payload"] = _ref(f"Payload.{job.name}")
    return variant


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """A query model's fields as OpenAPI query parameters, by the names clients spell."""
    schema = model.model_json_schema(by_alias=True, ref_template=REF)
    parameters = []
    for name, prop in schema["properties"].items():
        prop = {k: v for k, v in prop.items() if k not in ("title", "default")}
        variants = [v for v in prop.pop("anyOf", []) if v != {"type": "null"}]
        if len(variants) == 1:
            prop.update(variants[0])
        elif variants:
            prop["anyOf"] = variants
        parameters.append({"name": name, "in": "query", "required": False, "schema": prop})
    return parameters


def _bulk_request() -> dict[str, Any]:
    """The body of `POST /jobs/cancel` and `/jobs/retry`: `filter` holds the query of
    `GET /jobs` (its filters, not its paging) as a JSON object, numbers as numbers or text."""
    filters = {p["name"]: p["schema"] for p in _parameters(JobQuery) if p["name"] not in PAGING}
    payload = {"anyOf": [{"type": "string"}, {"type": "integer"}]}
    return {
        "type": "object",
        "properties": {
            "filter": {
                "type": "object",
                "properties": filters,
                "patternProperties": {r"^payload\.": payload},
                "additionalProperties": False,
            },
            "dryRun": {"type": "boolean", "default": False},
        },
        "required": ["filter"],
        "additionalProperties": False,
    }


def _pausing(collection: str, name: str, names: list[str], what: str) -> dict[str, Any]:
    """`/pause` and `/resume` of one tier or job type, named by the path parameter `name`."""
    parameter = {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
    parameter["schema"]["enum"] = names
    return {
        f"/{collection}/{{{name}}}/{verb}": {
            "parameters": [parameter],
            "post": {
                "summary": f"{verb.capitalize()} {what}; answers everything paused now",
                "responses": _answers(s200="PausedAnswer"),
            },
        }
        for verb in ("pause", "resume")
    }


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": schema}}}


def _answers(**by_status: str) -> dict[str, Any]:
    answers = {
        status.removeprefix("s"): {
            "description": shape,
            "content": {JSON: {"schema": _ref(shape)}},
        }
        for status, shape in by_status.items()
    }
    answers["default"] = {
        "description": "an error, in the one shape every error has",
        "content": {JSON: {"schema": _ref("Error")}},
    }
    return answers


JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}


SCHEDULE_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}


def _paths(enqueue: dict[str, Any], type_names: list[str]) -> dict[str, Any]:
    open_route = {"security": []}
    return {
        "/jobs": {
            "post": {
                "summary": "Enqueue one job",
                "requestBody": _body(enqueue),
                "responses": _answers(s201="Enqueued", s200="Enqueued"),
            },
            "get": {
                "summary": "List jobs, newest first",
                "description": "Also `payload.<field>=<value>`: the payload's top-level field "
                "equals the value, or is a list holding it.",
                "parameters": _parameters(JobQuery),
                "responses": _answers(s200="JobPage"),
            },
        },
        "/jobs/batch": {
            "post": {
                "summary": "Enqueue up to 1,000 jobs, all or nothing",
                "requestBody": _body(_ref("Batch")),
                "responses": _answers(s201="BatchEnqueued"),
            }
        },
        **{
            f"/jobs/{verb}": {
                "post": {
                    "summary": f"{summary} every job a filter selects, in batches (or count)",
                    "requestBody": _body(_ref("BulkRequest")),
                    "responses": _answers(s202="BulkAnswer"),
                }
            }
            for verb, summary in (("cancel", "Cancel"), ("retry", "Retry (failed, cancelled)"))
        },
        **_pausing("queues", "tier", list(TIERS), "a tier: workers start none of its jobs"),
        **_pausing("types", "type", type_names, "a job type: workers start none of its jobs"),
        "/jobs/{job_id}": {
            "parameters": [JOB_ID],
            "get": {"summary": "One job", "responses": _answers(s200="OneJob")},
            "patch": {
                "summary": "Reschedule a pending job: a new time and/or priority",
                "requestBody": _body(_ref("RescheduleRequest")),
                "responses": _answers(s200="OneJob"),
            },
            "delete": {"summary": "Cancel a job", "responses": _answers(s200="Done")},
        },
        "/jobs/{job_id}/attempts": {
            "parameters": [JOB_ID],
            "get": {"summary": "A job's attempts", "responses": _answers(s200="Attempts")},
        },
        "/jobs/{job_id}/artifact": {
            "parameters": [JOB_ID],
            "get": {
                "summary": "The file a job wrote (a report), with its media type",
                "responses": {
                    "200": {
                        "description": "the file",
                        "content": {
                            "text/csv": {"schema": {"type": "string"}},
                            JSON: {"schema": {"type": "object"}},
                        },
                    },
                    "default": _answers()["default"],
                },
            },
        },
        "/jobs/{job_id}/retry": {
            "parameters": [JOB_ID],
            "post": {
                "summary": "Run a failed or cancelled job again",
                "responses": _answers(s202="Done"),
            },
        },
        "/schedules": {
            "post": {
                "summary": "Create a cron schedule",
                "requestBody": _body(_ref("ScheduleRequest")),
                "responses": _answers(s201="OneSchedule"),
            },
            "get": {
                "summary": "Every schedule, by name",
                "responses": _answers(s200="SchedulePage"),
            },
        },
        "/schedules/{name}": {
            "parameters": [SCHEDULE_NAME],
            "get": {"summary": "One schedule", "responses": _answers(s200="OneSchedule")},
            "patch": {
                "summary": "Change a schedule (pause: enabled false)",
                "requestBody": _body(_ref("ScheduleChange")),
                "responses": _answers(s200="OneSchedule"),
            },
            "delete": {"summary": "Delete a schedule", "responses": _answers(s200="Done")},
        },
        "/schedules/{name}/run": {
            "parameters": [SCHEDULE_NAME],
            "post": {"summary": "Fire a schedule now", "responses": _answers(s201="ScheduleRun")},
        },
        "/embeddings/search": {
            "get": {
                "summary": "The stored keys of a namespace nearest a text, by cosine similarity",
                "parameters": _parameters(SearchQuery),
                "responses": _answers(s200="SearchResults"),
            }
        },
        "/dlq": {
            "get": {
                "summary": "Dead letters, newest first",
                "parameters": _parameters(DeadLetterQuery),
                "responses": _answers(s200="DeadLetterPage"),
            },
            "delete": {
                "summary": "Purge dead letters",
                "requestBody": _body(_ref("Selection")),
                "responses": _answers(s200="Purged"),
            },
        },
        "/dlq/groups": {
            "get": {
                "summary": "Dead letters by error fingerprint",
                "responses": _answers(s200="DeadLetterGroups"),
            }
        },
        "/dlq/replay": {
            "post": {
                "summary": "Run dead jobs again with fresh attempts",
                "requestBody": _body(_ref("Selection")),
                "responses": _answers(s202="Replayed"),
            }
        },
        "/stats": {"get": {"summary": "Counts and rates", "responses": _answers(s200="Stats")}},
        "/health": {
            "get": {
                "summary": "Whether PostgreSQL and RabbitMQ answer",
                "responses": _answers(s200="Health", s503="Health"),
                **open_route,
            }
        },
        "/metrics": {
            "get": {
                "summary": "Metrics in Prometheus's text format",
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format 0.0.4",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "default": _answers()["default"],
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {JSON: {"schema": {"type": "object"}}},
                    }
                },
                **open_route,
            }
        },
        **ui_paths(_parameters(JobQuery), JOB_ID, SCHEDULE_NAME),
    }


class OpenApi:
    """Serves the document, built once."""

    def __init__(self, registry: Registry) -> None:
        self.document = document(registry)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.document
