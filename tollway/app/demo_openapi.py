"""The OpenAPI 3 document of `make run`'s demo API (the echo upstream), which the portal renders as the
API's reference docs."""

from __future__ import annotations

import json
from typing import Any

_ECHO = {
    "type": "object",
    "description": "What the upstream received, as Envoy forwarded it.",
    "properties": {
        "method": {"type": "string", "description": "The request's method."},
        "path": {"type": "string", "description": "The path the upstream saw (the context path removed)."},
        "headers": {
            "type": "object",
            "description": "Request headers, lower-cased, including the x-tollway-* identity headers.",
            "additionalProperties": {"type": "string"},
        },
        "body": {"type": "string", "description": "The request body as text."},
    },
    "required": ["method", "path", "headers", "body"],
}


def demo_document() -> dict[str, Any]:
    problem = {"$ref": "#/components/responses/Problem"}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Echo",
            "version": "1.0.0",
            "description": "Answers every request with what it received. Authenticate with your API key "
            "in the x-api-key header.",
        },
        "tags": [{"name": "Echo", "description": "Requests answered with their own description."}],
        "paths": {
            "/{path}": {
                "parameters": [
                    {
                        "name": "path",
                        "in": "path",
                        "required": True,
                        "description": "Any path below the API's base path.",
                        "schema": {"type": "string"},
                    }
                ],
                "get": {
                    "tags": ["Echo"],
                    "summary": "Echo a GET request",
                    "operationId": "echoGet",
                    "responses": {
                        "200": {
                            "description": "The request as received",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Echo"}}
                            },
                        },
                        "401": problem,
                        "429": problem,
                    },
                },
                "post": {
                    "tags": ["Echo"],
                    "summary": "Echo a POST request and its body",
                    "operationId": "echoPost",
                    "requestBody": {"content": {"text/plain": {"schema": {"type": "string"}}}},
                    "responses": {
                        "200": {
                            "description": "The request as received",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Echo"}}
                            },
                        },
                        "401": problem,
                        "429": problem,
                    },
                },
            }
        },
        "components": {
            "schemas": {
                "Echo": _ECHO,
                "Problem": {
                    "type": "object",
                    "description": "An RFC 9457 problem document from the gateway.",
                    "properties": {
                        "type": {"type": "string"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "reason": {"type": "string", "description": "Why, e.g. key_invalid or rate_limited."},
                    },
                },
            },
            "responses": {
                "Problem": {
                    "description": "Refused by the gateway (key, subscription or limit)",
                    "content": {
                        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                    },
                }
            },
        },
    }


def demo_document_bytes() -> bytes:
    return json.dumps(demo_document(), indent=2).encode()
