"""OpenAPI documents attached to APIs: validation on upload (every refusal explained, nothing stored)
and CatalogService's Set/Get/DeleteApiDocument through a real grpc.aio server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import grpc
import pytest

from tests.catalog.catalog_helpers import dump
from tests.support import grpc_server
from tollway.catalog.documents import MAX_DOCUMENT_BYTES, parse_document
from tollway.catalog.servicer import CatalogServicer
from tollway.catalog.store import CatalogStore
from tollway.catalog.v1 import catalog_pb2 as pb
from tollway.catalog.v1 import catalog_pb2_grpc
from tollway.db import Database
from tollway.errors import InvalidArgument

PETS = {
    "openapi": "3.0.3",
    "info": {"title": "Pets", "version": "1.2.0"},
    "paths": {
        "/pets/{id}": {
            "get": {
                "summary": "One pet",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": {
                        "description": "the pet",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}},
                    }
                },
            }
        }
    },
    "components": {"schemas": {"Pet": {"type": "object", "properties": {"name": {"type": "string"}}}}},
}
PETS_YAML = b"""openapi: 3.1.0
info:
  title: Pets
  version: "2"
paths:
  /pets:
    get:
      responses:
        "200":
          description: all pets
"""


def test_json_and_yaml_documents_are_accepted() -> None:
    document = parse_document(json.dumps(PETS).encode())
    assert (document.media_type, document.title, document.version) == ("application/json", "Pets", "1.2.0")
    document = parse_document(PETS_YAML)
    assert (document.media_type, document.version) == ("application/yaml", "2")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"\xff\xfe", "UTF-8"),
        (b"{not json", "not valid JSON"),
        (b"key: [unclosed", "not valid JSON or YAML"),
        (b"- a\n- b\n", "must be an object"),
        (b'{"swagger": "2.0", "info": {"title": "x", "version": "1"}, "paths": {}}', "OpenAPI 3"),
        (b'{"openapi": "3.0.3", "info": {"title": "x"}, "paths": {}}', "'version' is a required property"),
        (
            b"openapi: 3.0.3\ninfo: &i {title: x, version: '1'}\npaths: {}\nx-copy: *i\n",
            "anchors and aliases",
        ),
        (
            b'{"openapi": "3.0.3", "info": {"title": "x", "version": "1"}, "paths": {"/a": {"$ref": "http://example.com/a.json"}}}',
            "only local references",
        ),
        (b"{" * 100 + b"}" * 100, "not valid JSON"),
        (b"a:\n" + b"".join(b"  " * i + b"b:\n" for i in range(1, 80)), "nested deeper"),
        (b"x" * (MAX_DOCUMENT_BYTES + 1), "at most"),
    ],
)
def test_bad_documents_are_refused_with_a_reason(content: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_document(content)


@pytest.fixture
async def stub(database: Database) -> AsyncIterator[catalog_pb2_grpc.CatalogServiceStub]:
    servicer = CatalogServicer(CatalogStore(database, on_commit=lambda: None))
    async with grpc_server(
        lambda server: catalog_pb2_grpc.add_CatalogServiceServicer_to_server(servicer, server)
    ) as channel:
        yield catalog_pb2_grpc.CatalogServiceStub(channel)


async def test_documents_are_set_read_replaced_and_deleted(
    stub: catalog_pb2_grpc.CatalogServiceStub, database: Database
) -> None:
    api = (
        await stub.CreateApi(
            pb.CreateApiRequest(
                api=pb.Api(name="pets", context_path="/pets/v1", upstream_urls=["http://127.0.0.1:9"])
            )
        )
    ).api
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.GetApiDocument(pb.GetApiDocumentRequest(api_id=api.id))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert "has no OpenAPI document" in (missing.value.details() or "")

    stored = (
        await stub.SetApiDocument(pb.SetApiDocumentRequest(api_id="pets", content=json.dumps(PETS).encode()))
    ).document
    assert (stored.api_id, stored.title, stored.media_type) == (api.id, "Pets", "application/json")
    read = (await stub.GetApiDocument(pb.GetApiDocumentRequest(api_id=api.id))).document
    assert json.loads(read.content) == PETS

    before = await dump(database)
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await stub.SetApiDocument(pb.SetApiDocumentRequest(api_id=api.id, content=b'{"openapi": "3.0.0"}'))
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "invalid OpenAPI document" in (invalid.value.details() or "")
    assert await dump(database) == before
    assert (
        await stub.GetApiDocument(pb.GetApiDocumentRequest(api_id=api.id))
    ).document.content == read.content

    await stub.SetApiDocument(pb.SetApiDocumentRequest(api_id=api.id, content=PETS_YAML))
    assert (
        await stub.GetApiDocument(pb.GetApiDocumentRequest(api_id=api.id))
    ).document.media_type == "application/yaml"
    await stub.DeleteApiDocument(pb.DeleteApiDocumentRequest(api_id=api.id))
    await stub.DeleteApiDocument(pb.DeleteApiDocumentRequest(api_id=api.id))
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await stub.GetApiDocument(pb.GetApiDocumentRequest(api_id=api.id))
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as no_api:
        await stub.SetApiDocument(pb.SetApiDocumentRequest(api_id="nope", content=PETS_YAML))
    assert no_api.value.code() == grpc.StatusCode.NOT_FOUND
