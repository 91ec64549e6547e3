"""GET /api/openapi.json: the HTTP API described in OpenAPI 3.1, payloads from the wire models."""

from __future__ import annotations

from functools import cache
from typing import Any

from aiohttp import web

from exporter import __version__
from exporter.api.replies import json_reply
from exporter.model import ShopperEventIn, ShopperUpdate

_JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {_JSON: {"schema": schema}}}


def _reply(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    if schema is None:
        return {"description": description}
    return {"description": description, "content": {_JSON: {"schema": schema}}}


def _ingest(summary: str, item: str) -> dict[str, Any]:
    one_of = {
        "oneOf": [
            _ref(item),
            {"type": "array", "items": _ref(item)},
            _ref("Envelope"),
        ]
    }
    return {
        "post": {
            "summary": summary,
            "requestBody": _body(one_of),
            "responses": {
                "200": _reply(
                    "Applied; refused and ignored records listed by index", _ref("Report")
                ),
                "400": _reply("Not JSON", _ref("Error")),
                "401": _reply("The write token is required", _ref("Error")),
                "408": _reply("The body did not arrive within --body-timeout", _ref("Error")),
                "413": _reply("Body or batch over the limit", _ref("Error")),
                "415": _reply("A form body (send JSON)", _ref("Error")),
                "422": _reply(
                    "Every record refused, or the body's shape is wrong",
                    {"oneOf": [_ref("Report"), _ref("Error")]},
                ),
                "429": {
                    **_reply(
                        "Every record is a new shopper and every tracked shopper is online "
                        "(--max-shoppers); retry after the given seconds",
                        _ref("Report"),
                    ),
                    "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                },
            },
        }
    }


def _path_user() -> dict[str, Any]:
    return {"name": "user_id", "in": "path", "required": True, "schema": {"type": "string"}}


@cache
def document() -> dict[str, Any]:
    """The OpenAPI document (built once)."""
    schemas: dict[str, Any] = {
        "ShopperUpdate": ShopperUpdate.model_json_schema(by_alias=True),
        "ShopperEvent": ShopperEventIn.model_json_schema(by_alias=True),
        "Envelope": {
            "type": "object",
            "properties": {
                "metrics": {"type": "array", "items": _ref("ShopperUpdate")},
                "events": {"type": "array", "items": _ref("ShopperEvent")},
            },
        },
        "FieldError": {
            "type": "object",
            "required": ["field", "message"],
            "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
        },
        "Report": {
            "type": "object",
            "required": ["accepted", "ignored", "ignoredRecords", "rejected"],
            "properties": {
                "accepted": {"type": "integer"},
                "ignored": {"type": "integer", "description": "How many records were ignored"},
                "ignoredRecords": {"type": "array", "items": _ref("IgnoredRecord")},
                "rejected": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["index", "kind", "reason", "errors"],
                        "properties": {
                            "index": {"type": "integer"},
                            "kind": {"type": "string", "enum": ["metric", "event"]},
                            "reason": {
                                "type": "string",
                                "enum": ["invalid", "future", "capacity", "wrong_shard"],
                                "description": "invalid: a field fails validation; future: "
                                "stamped more than --max-clock-skew ahead; capacity: a new "
                                "shopper while --max-shoppers are tracked, all online; "
                                "wrong_shard: another replica (--shard) owns the shopper",
                            },
                            "errors": {"type": "array", "items": _ref("FieldError")},
                            "shard": {
                                "type": "integer",
                                "description": "wrong_shard only: the shard that owns the shopper",
                            },
                        },
                    },
                },
            },
        },
        "IgnoredRecord": {
            "type": "object",
            "description": "A valid record that changed nothing: the state already holds it.",
            "required": ["index", "kind", "reason", "message"],
            "properties": {
                "index": {"type": "integer"},
                "kind": {"type": "string", "enum": ["metric", "event"]},
                "reason": {
                    "type": "string",
                    "enum": ["stale", "duplicate"],
                    "description": "stale: older than the stored state; duplicate: the same "
                    "update again, an order already counted, or an action an update reported",
                },
                "message": {"type": "string"},
                "timestamp": {
                    "type": "string",
                    "format": "date-time",
                    "description": "The record's time (stale records)",
                },
                "storedTimestamp": {
                    "type": "string",
                    "format": "date-time",
                    "description": "The time of the stored state it is older than (stale)",
                },
            },
        },
        "Error": {
            "type": "object",
            "required": ["error", "message"],
            "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
        },
    }
    limit = {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}}
    online = {"name": "online", "in": "query", "schema": {"type": "boolean"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Live Shopper Metrics", "version": __version__},
        "paths": {
            "/api/metrics": _ingest("Push shopper updates", "ShopperUpdate"),
            "/api/events": _ingest("Push explicit shopping events", "ShopperEvent"),
            "/api/shoppers": {
                "get": {
                    "summary": "Any tracked shopper: search, filters, a sort, cursor pages",
                    "parameters": [
                        _query("q", {"type": "string", "maxLength": 200}),
                        online,
                        _query("activity", {"type": "string"}),
                        _query("sort", {"enum": ["recent", "cart", "session"]}),
                        limit,
                        _query("cursor", {"type": "string"}),
                    ],
                    "responses": {"200": _reply("Shoppers"), "400": _reply("Bad parameter")},
                }
            },
            "/api/history": {
                "get": {
                    "summary": "The live page's series, one sample a second",
                    "parameters": [
                        _query("window", {"type": "integer", "minimum": 1, "maximum": 3600})
                    ],
                    "responses": {"200": _reply("Columns"), "400": _reply("Bad parameter")},
                }
            },
            "/api/shoppers/{user_id}": {
                "get": {
                    "summary": "One shopper",
                    "parameters": [_path_user()],
                    "responses": {"200": _reply("The shopper"), "404": _reply("Unknown")},
                },
                "delete": {
                    "summary": "Erase a shopper",
                    "parameters": [_path_user()],
                    "responses": {"204": _reply("Erased"), "404": _reply("Unknown")},
                },
            },
            "/api/shoppers/{user_id}/events": {
                "get": {
                    "summary": "A shopper's recent events, newest first",
                    "parameters": [_path_user(), limit],
                    "responses": {"200": _reply("Events"), "400": _reply("Bad parameter")},
                }
            },
            "/api/summary": {
                "get": {"summary": "Key metrics", "responses": {"200": _reply("Summary")}}
            },
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": _reply("Alive")}}},
            "/readyz": {
                "get": {
                    "summary": "Readiness",
                    "responses": {"200": _reply("Ready"), "503": _reply("Starting")},
                }
            },
        },
        "components": {"schemas": schemas},
    }


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema}


async def handle_openapi(request: web.Request) -> web.Response:
    """The OpenAPI document."""
    return json_reply(document())


def setup_openapi(app: web.Application) -> None:
    app.router.add_get("/api/openapi.json", handle_openapi)
