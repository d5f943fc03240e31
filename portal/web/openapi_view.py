"""An OpenAPI 3 document as readable reference docs (pure): operations grouped by tag, with their
parameters, request body and responses, and schemas written out as nested property lists.

The document was validated on upload (tollway/catalog/documents.py: bounded size and depth, local
references only), but it is still a publisher's data rendered for every consumer: every string goes
through the template's escaping, references are followed only within the document, a reference
cycle ends at the first repeat, and schemas are written at most `MAX_SCHEMA_DEPTH` levels deep."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
MAX_SCHEMA_DEPTH = 4
MAX_PROPERTIES = 50


@dataclass(frozen=True)
class SchemaLine:
    """One line of a schema's outline: its name, type and description, indented by depth."""

    depth: int
    name: str
    type: str
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class Parameter:
    name: str
    location: str
    required: bool
    type: str
    description: str


@dataclass(frozen=True)
class Body:
    media_type: str
    schema: list[SchemaLine]


@dataclass(frozen=True)
class ResponseView:
    status: str
    description: str
    bodies: list[Body]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    anchor: str
    summary: str
    description: str
    parameters: list[Parameter]
    request_bodies: list[Body]
    responses: list[ResponseView]
    deprecated: bool


@dataclass(frozen=True)
class Section:
    tag: str
    description: str
    operations: list[Operation] = field(default_factory=list)


@dataclass(frozen=True)
class Reference:
    title: str
    version: str
    description: str
    servers: list[str]
    sections: list[Section]


def _text(value: Any, limit: int = 4000) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


class _Resolver:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def resolve(
        self, node: Any, seen: frozenset[str] = frozenset()
    ) -> tuple[dict[str, Any], str, frozenset[str]]:
        """(the node with a local $ref followed, the referenced name or "", refs followed so far)."""
        node = _dict(node)
        name = ""
        while isinstance(node.get("$ref"), str):
            ref = node["$ref"]
            if ref in seen or not ref.startswith("#/"):
                return {}, ref.rsplit("/", 1)[-1], seen
            seen = seen | {ref}
            name = ref.rsplit("/", 1)[-1]
            target: Any = self.document
            for part in ref[2:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                target = target.get(part) if isinstance(target, dict) else None
            node = _dict(target)
        return node, name, seen

    def type_of(self, schema: Any, seen: frozenset[str] = frozenset()) -> str:
        node, name, seen = self.resolve(schema, seen)
        kind = node.get("type")
        kind = " | ".join(str(k) for k in kind) if isinstance(kind, list) else _text(kind, 40)
        if kind == "array":
            return f"array of {self.type_of(node.get('items'), seen)}"
        for combinator in ("oneOf", "anyOf", "allOf"):
            if isinstance(node.get(combinator), list):
                joined = ", ".join(self.type_of(option, seen) for option in node[combinator][:8])
                return f"{combinator}({joined})"
        fmt = _text(node.get("format"), 40)
        label = name or kind or "any"
        if fmt and not name:
            label = f"{label} ({fmt})"
        if isinstance(node.get("enum"), list):
            label += ": one of " + ", ".join(repr(v)[:40] for v in node["enum"][:12])
        return label

    def outline(self, schema: Any, depth: int = 0, seen: frozenset[str] = frozenset()) -> list[SchemaLine]:
        node, _, seen = self.resolve(schema, seen)
        if node.get("type") == "array":
            node, _, seen = self.resolve(node.get("items"), seen)
        properties = _dict(node.get("properties"))
        if depth >= MAX_SCHEMA_DEPTH or not properties:
            return []
        required = _list(node.get("required"))
        lines: list[SchemaLine] = []
        for name, prop in list(properties.items())[:MAX_PROPERTIES]:
            resolved, _, _ = self.resolve(prop, seen)
            lines.append(
                SchemaLine(
                    depth,
                    _text(name, 200),
                    self.type_of(prop, seen),
                    name in required,
                    _text(resolved.get("description"), 500),
                )
            )
            lines.extend(self.outline(prop, depth + 1, seen))
        return lines


def reference(document: dict[str, Any]) -> Reference:
    resolver = _Resolver(document)
    info = _dict(document.get("info"))
    tag_docs = {
        _text(t.get("name"), 200): _text(t.get("description"))
        for t in _list(document.get("tags"))
        if isinstance(t, dict)
    }
    sections: dict[str, Section] = {}
    for path, item in _dict(document.get("paths")).items():
        item = _dict(item)
        shared = _list(item.get("parameters"))
        for method in HTTP_METHODS:
            if method not in item:
                continue
            operation = _dict(item[method])
            tags = _list(operation.get("tags"))
            tag = _text(tags[0], 200) if tags else "Operations"
            section = sections.setdefault(tag, Section(tag, tag_docs.get(tag, "")))
            section.operations.append(_operation(resolver, method, _text(path, 500), operation, shared))
    servers = [_text(_dict(s).get("url"), 500) for s in _list(document.get("servers"))]
    return Reference(
        title=_text(info.get("title"), 200),
        version=_text(info.get("version"), 100),
        description=_text(info.get("description")),
        servers=[s for s in servers if s],
        sections=list(sections.values()),
    )


def _operation(
    resolver: _Resolver, method: str, path: str, operation: dict[str, Any], shared: list[Any]
) -> Operation:
    parameters = []
    own = _list(operation.get("parameters"))
    for raw in [*shared, *own]:
        parameter, _, _ = resolver.resolve(raw)
        parameters.append(
            Parameter(
                name=_text(parameter.get("name"), 200),
                location=_text(parameter.get("in"), 20),
                required=bool(parameter.get("required")),
                type=resolver.type_of(parameter.get("schema")),
                description=_text(parameter.get("description"), 1000),
            )
        )
    body, _, _ = resolver.resolve(operation.get("requestBody"))
    responses = []
    for status, raw in _dict(operation.get("responses")).items():
        response, _, _ = resolver.resolve(raw)
        responses.append(
            ResponseView(
                str(status)[:10], _text(response.get("description"), 1000), _bodies(resolver, response)
            )
        )
    anchor = "op-" + "".join(c if c.isalnum() else "-" for c in f"{method}-{path}").strip("-")
    return Operation(
        method=method.upper(),
        path=path,
        anchor=anchor[:120],
        summary=_text(operation.get("summary"), 300),
        description=_text(operation.get("description")),
        parameters=parameters,
        request_bodies=_bodies(resolver, body),
        responses=responses,
        deprecated=bool(operation.get("deprecated")),
    )


def _bodies(resolver: _Resolver, holder: dict[str, Any]) -> list[Body]:
    bodies = []
    for media_type, content in _dict(holder.get("content")).items():
        schema = _dict(content).get("schema")
        lines = resolver.outline(schema)
        if not lines and schema is not None:
            lines = [SchemaLine(0, "", resolver.type_of(schema))]
        bodies.append(Body(_text(media_type, 100), lines))
    return bodies
