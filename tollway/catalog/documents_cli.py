"""`tollway api doc ...`: attach, read and remove an API's OpenAPI document (CatalogService)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tollway.catalog.v1 import catalog_pb2 as cat
from tollway.cli_support import DEFAULT_ADMIN_ADDR, AdminAddr, AdminToken, Output, admin_client, emit, fail

if TYPE_CHECKING:
    import grpc

    from tollway.catalog.v1.catalog_pb2_grpc import CatalogServiceStub


def _catalog_service_stub(channel: grpc.Channel) -> CatalogServiceStub:
    """The stub, imported on first use: gRPC's import is paid by a call, not by `tollway --help`."""
    from tollway.catalog.v1.catalog_pb2_grpc import CatalogServiceStub

    return CatalogServiceStub(channel)


ApiRef = Annotated[str, typer.Argument(help="API id, name, or name:version.")]


def document_commands() -> typer.Typer:
    doc_app = typer.Typer(
        help="An API's OpenAPI 3 document (the portal's reference docs).", no_args_is_help=True
    )

    @doc_app.command("set")
    def set_document(
        api: ApiRef,
        path: Annotated[str, typer.Argument(help="OpenAPI 3 document, JSON or YAML; - for stdin.")],
        addr: AdminAddr = DEFAULT_ADMIN_ADDR,
        token: AdminToken = None,
        output: Output = None,
    ) -> None:
        """Attach (or replace) the API's OpenAPI document; it is validated first."""
        try:
            content = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
        except OSError as exc:
            fail(f"cannot read {path}: {exc.strerror}", code=2)
        with admin_client(addr, token, _catalog_service_stub) as catalog:
            request = cat.SetApiDocumentRequest(api_id=api, content=content)
            document = catalog.call(catalog.service.SetApiDocument, request).document
            document.ClearField("content")  # the summary, not the document back
            emit(document)

    @doc_app.command("get")
    def get_document(
        api: ApiRef, addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None
    ) -> None:
        """Print the API's OpenAPI document as it was attached."""
        with admin_client(addr, token, _catalog_service_stub) as catalog:
            request = cat.GetApiDocumentRequest(api_id=api)
            document = catalog.call(catalog.service.GetApiDocument, request).document
        sys.stdout.buffer.write(document.content)
        sys.stdout.buffer.flush()

    @doc_app.command("delete")
    def delete_document(
        api: ApiRef, addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None
    ) -> None:
        """Remove the API's OpenAPI document."""
        with admin_client(addr, token, _catalog_service_stub) as catalog:
            emit(catalog.call(catalog.service.DeleteApiDocument, cat.DeleteApiDocumentRequest(api_id=api)))

    return doc_app
