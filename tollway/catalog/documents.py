"""An API's OpenAPI 3 document: validated on upload (openapi-spec-validator), stored as sent, served to
the developer portal, which renders it as the API's reference.

A document is data from a publisher, but it is rendered for every consumer and parsed by a validator
that follows `$ref`s, so what a document may hold is bounded before it is parsed at all: at most
1 MiB, UTF-8, no YAML anchors or aliases (their expansion is how a small file becomes a huge tree),
nesting at most 64 deep, and only local references (`#/...`): a remote `$ref` would make the server
fetch a URL the publisher chose."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tollway import schema_portal
from tollway.catalog.store import CatalogStore
from tollway.db import Database
from tollway.errors import InvalidArgument, NotFound
from tollway.schema import utcnow

MAX_DOCUMENT_BYTES = 1024 * 1024
MAX_DEPTH = 64
JSON = "application/json"
YAML = "application/yaml"


@dataclass(frozen=True, slots=True)
class ValidDocument:
    """A document that passed validation, parsed."""

    content: bytes
    media_type: str
    spec: dict[str, Any]

    @property
    def title(self) -> str:
        return str(self.spec.get("info", {}).get("title", ""))[:200]

    @property
    def version(self) -> str:
        return str(self.spec.get("info", {}).get("version", ""))[:100]


def parse_document(content: bytes) -> ValidDocument:
    """The document, parsed and validated as OpenAPI 3.x; INVALID_ARGUMENT saying what is wrong."""
    if not content.strip():
        raise InvalidArgument("the OpenAPI document is empty")
    if len(content) > MAX_DOCUMENT_BYTES:
        raise InvalidArgument(
            f"the OpenAPI document must be at most {MAX_DOCUMENT_BYTES} bytes (got {len(content)})"
        )
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument("the OpenAPI document must be UTF-8 text (JSON or YAML)") from None
    if text.lstrip().startswith("{"):
        media_type = JSON
        try:
            spec = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise InvalidArgument(f"the OpenAPI document is not valid JSON: {exc}") from None
    else:
        media_type = YAML
        spec = _load_yaml(text)
    if not isinstance(spec, dict):
        raise InvalidArgument("the OpenAPI document must be an object with an `openapi` field")
    _check_shape(spec, "", 0)
    version = str(spec.get("openapi", ""))
    if not version.startswith("3."):
        raise InvalidArgument(
            f"the document must be OpenAPI 3 (its `openapi` field says {version[:20]!r}; "
            "Swagger 2 is not accepted)"
        )
    _validate(spec)
    return ValidDocument(content=content, media_type=media_type, spec=spec)


def _load_yaml(text: str) -> Any:
    import yaml

    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise InvalidArgument("YAML anchors and aliases are not accepted in an OpenAPI document")
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "parse error"
        raise InvalidArgument(f"the OpenAPI document is not valid JSON or YAML: {first}") from None


def _check_shape(value: Any, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise InvalidArgument(f"the OpenAPI document is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidArgument(f"the OpenAPI document has a non-string key at {path or '/'}")
            if key == "$ref" and not (isinstance(item, str) and item.startswith("#")):
                raise InvalidArgument(
                    f"only local references (#/...) are accepted; {path}/$ref is {str(item)[:80]!r}"
                )
            _check_shape(item, f"{path}/{key}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_shape(item, f"{path}/{index}", depth + 1)


def _validate(spec: dict[str, Any]) -> None:
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

    try:
        validate(spec)
    except OpenAPIValidationError as exc:
        where = "/".join(str(part) for part in exc.absolute_path)
        raise InvalidArgument(f"invalid OpenAPI document at /{where}: {exc.message}"[:500]) from None
    except RecursionError:
        raise InvalidArgument("the OpenAPI document's references form a cycle too deep to check") from None


class ApiDocuments:
    """The api_document table, reached by API id or name through the catalog."""

    def __init__(self, db: Database, catalog: CatalogStore, clock: Callable[[], Any] = utcnow) -> None:
        self._db = db
        self._catalog = catalog
        self._clock = clock

    async def set_document(self, api_ref: str, content: bytes) -> schema_portal.ApiDocument:
        if not api_ref.strip():
            raise InvalidArgument("api_id is required")
        document = parse_document(content)
        api = (await self._catalog.get_api(api_ref.strip())).api
        async with self._db.session() as session:
            row = await session.get(schema_portal.ApiDocument, api.id, with_for_update=True)
            if row is None:
                row = schema_portal.ApiDocument(api_id=api.id, content=b"")
            row.content = document.content
            row.media_type = document.media_type
            row.title = document.title
            row.version = document.version
            row.updated_at = self._clock()
            session.add(row)
            await session.commit()
        return row

    async def get_document(self, api_ref: str) -> schema_portal.ApiDocument:
        if not api_ref.strip():
            raise InvalidArgument("api_id is required")
        api = (await self._catalog.get_api(api_ref.strip())).api
        async with self._db.session() as session:
            row = await session.get(schema_portal.ApiDocument, api.id)
        if row is None:
            raise NotFound(f"API {api.name} ({api.id}) has no OpenAPI document")
        return row

    async def api_ids_with_documents(self) -> set[str]:
        """The ids of the APIs that have a document."""
        from sqlmodel import select

        async with self._db.session() as session:
            return set((await session.exec(select(schema_portal.ApiDocument.api_id))).all())

    async def delete_document(self, api_ref: str) -> None:
        if not api_ref.strip():
            raise InvalidArgument("api_id is required")
        api = (await self._catalog.get_api(api_ref.strip())).api
        async with self._db.session() as session:
            row = await session.get(schema_portal.ApiDocument, api.id)
            if row is not None:
                await session.delete(row)
                await session.commit()
