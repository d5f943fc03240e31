"""Check through a real grpc.aio server, with CheckRequests shaped like Envoy's."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from envoy.config.core.v3.base_pb2 import HeaderValueOption
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc
from google.protobuf.json_format import MessageToDict
from google.rpc import code_pb2
from support import grpc_server

import keymgr.servicer as servicer_module
from keymgr.index import KeyIndex
from keymgr.keys import key_hash, new_key
from keymgr.servicer import AuthorizationServicer, add_authorization_service
from tests.support import logged_text
from tollway import schema
from tollway.db import Database

SECRET = "check-test-secret"
NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
OVERWRITE = HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


@dataclass
class World:
    api_id: str
    pending_api_id: str
    plan_id: str
    application_id: str
    subscription_id: str
    key_id: str
    full_key: str
    revoked_key: str
    stub: external_auth_pb2_grpc.AuthorizationStub
    index: KeyIndex


async def seed(db: Database) -> dict[str, str]:
    key, revoked = new_key(), new_key()
    plan = schema.Plan(id=schema.new_id("plan"), name="gold")
    api = schema.Api(id=schema.new_id("api"), name="weather", context_path="/weather/v1", published=True)
    pending_api = schema.Api(id=schema.new_id("api"), name="maps", context_path="/maps/v1", published=True)
    app = schema.Application(id=schema.new_id("app"), name="one")
    sub = schema.Subscription(id=schema.new_id("sub"), application_id=app.id, api_id=api.id, plan_id=plan.id)
    pending = schema.Subscription(
        id=schema.new_id("sub"),
        application_id=app.id,
        api_id=pending_api.id,
        plan_id=plan.id,
        state="PENDING_APPROVAL",
    )
    async with db.session() as session:
        for rows in (
            [plan, api, pending_api, app],
            [
                sub,
                pending,
                schema.ApiKey(
                    key_id=key.key_id, application_id=app.id, key_hash=key_hash(SECRET, key.full_key)
                ),
                schema.ApiKey(
                    key_id=revoked.key_id,
                    application_id=app.id,
                    key_hash=key_hash(SECRET, revoked.full_key),
                    revoked_at=NOW,
                ),
                schema.BlockRule(id=schema.new_id("blk"), target="CLIENT_CIDR", value="203.0.113.0/24"),
            ],
        ):
            session.add_all(rows)
            await session.flush()
        await db.record_change(session)
        await session.commit()
    return {
        "api_id": api.id,
        "pending_api_id": pending_api.id,
        "plan_id": plan.id,
        "application_id": app.id,
        "subscription_id": sub.id,
        "key_id": key.key_id,
        "full_key": key.full_key,
        "revoked_key": revoked.full_key,
    }


@pytest.fixture
async def world(database: Database) -> AsyncIterator[World]:
    ids = await seed(database)
    index = KeyIndex(database)
    await index.load_all()
    servicer = AuthorizationServicer(index, SECRET, clock=lambda: NOW)
    register = lambda server: add_authorization_service(servicer, server)  # noqa: E731
    async with grpc_server(register) as channel:
        yield World(**ids, stub=external_auth_pb2_grpc.AuthorizationStub(channel), index=index)


def check_request(
    headers: dict[str, str] | None = None,
    api_id: str | None = None,
    ip: str = "192.0.2.10",
    raw: bool = False,
) -> external_auth_pb2.CheckRequest:
    """A CheckRequest as Envoy sends it (headers map, or header_map with encode_raw_headers)."""
    all_headers = {
        ":authority": "gateway.example",
        ":method": "GET",
        ":path": "/weather/v1/today",
        "x-request-id": "7c0b-req",
        "user-agent": "curl/8",
        **(headers or {}),
    }
    http = attribute_context_pb2.AttributeContext.HttpRequest(
        id="1234", method="GET", path="/weather/v1/today", host="gateway.example", protocol="HTTP/1.1"
    )
    if raw:
        for name, value in all_headers.items():
            http.header_map.headers.add(key=name, raw_value=value.encode())
    else:
        http.headers.update(all_headers)
    attributes = attribute_context_pb2.AttributeContext(
        request=attribute_context_pb2.AttributeContext.Request(http=http),
    )
    attributes.source.address.socket_address.address = ip
    attributes.source.address.socket_address.port_value = 50123
    if api_id is not None:
        attributes.context_extensions["api_id"] = api_id
    return external_auth_pb2.CheckRequest(attributes=attributes)


def headers_of(options: Any) -> dict[str, str]:
    return {option.header.key: option.header.value for option in options}


def problem(response: external_auth_pb2.CheckResponse) -> dict[str, Any]:
    denied = response.denied_response
    headers = headers_of(denied.headers)
    assert headers["content-type"] == "application/problem+json"
    assert headers["cache-control"] == "no-store"
    body = json.loads(denied.body)
    assert body["status"] == denied.status.code
    assert body["type"] == "https://tollway.dev/problems/" + body["reason"]
    assert body["title"] and body["detail"]
    assert set(body) == {"type", "title", "status", "detail", "reason", "request_id"}
    return body


async def test_allowed_with_x_api_key(world: World) -> None:
    response = await world.stub.Check(
        check_request({"x-api-key": world.full_key, "x-tollway-application": "spoofed"}, world.api_id)
    )
    assert response.status.code == code_pb2.OK
    assert not response.HasField("denied_response")
    ok = response.ok_response
    assert headers_of(ok.headers) == {
        "x-tollway-application": world.application_id,
        "x-tollway-subscription": world.subscription_id,
        "x-tollway-plan": world.plan_id,
        "x-tollway-key-id": world.key_id,
    }
    # OVERWRITE replaces what the client sent under these names; `append` stays unset.
    assert all(o.append_action == OVERWRITE and not o.HasField("append") for o in ok.headers)
    assert list(ok.headers_to_remove) == ["x-api-key"]
    assert MessageToDict(response.dynamic_metadata) == {
        "api_id": world.api_id,
        "api_name": "weather",
        "application_id": world.application_id,
        "subscription_id": world.subscription_id,
        "plan_id": world.plan_id,
        "plan_name": "gold",
        "key_id": world.key_id,
    }
    assert not ok.HasField("dynamic_metadata")  # the deprecated place


async def test_allowed_with_bearer_removes_authorization(world: World) -> None:
    response = await world.stub.Check(
        check_request({"authorization": f"bearer {world.full_key}"}, world.api_id)
    )
    assert response.status.code == code_pb2.OK
    assert list(response.ok_response.headers_to_remove) == ["authorization"]


async def test_allowed_with_raw_header_map(world: World) -> None:
    response = await world.stub.Check(check_request({"x-api-key": world.full_key}, world.api_id, raw=True))
    assert response.status.code == code_pb2.OK
    assert response.dynamic_metadata.fields["key_id"].string_value == world.key_id


async def test_repeated_allows_are_identical(world: World) -> None:
    request = check_request({"x-api-key": world.full_key}, world.api_id)
    first = await world.stub.Check(request)
    second = await world.stub.Check(request)
    assert first == second


async def test_key_missing(world: World) -> None:
    response = await world.stub.Check(check_request({}, world.api_id))
    assert response.status.code == code_pb2.UNAUTHENTICATED
    assert response.denied_response.status.code == 401
    assert headers_of(response.denied_response.headers)["www-authenticate"] == 'Bearer realm="tollway"'
    body = problem(response)
    assert body["reason"] == "key_missing"
    assert body["request_id"] == "7c0b-req"
    assert response.dynamic_metadata.fields["reason"].string_value == "key_missing"
    assert response.dynamic_metadata.fields["api_id"].string_value == world.api_id


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"x-api-key": "tw_garbage"}, "key_malformed"),
        ({"authorization": "Bearer tw_garbage"}, "key_malformed"),
        ({"x-api-key": new_key().full_key}, "key_invalid"),
    ],
)
async def test_bad_keys(world: World, headers: dict[str, str], reason: str) -> None:
    response = await world.stub.Check(check_request(headers, world.api_id))
    assert response.status.code == code_pb2.UNAUTHENTICATED
    assert response.denied_response.status.code == 401
    www = headers_of(response.denied_response.headers)["www-authenticate"]
    assert www == 'Bearer realm="tollway", error="invalid_token"'
    assert problem(response)["reason"] == reason
    assert "key_id" not in response.dynamic_metadata.fields  # nothing unverified goes to the access log


async def test_wrong_secret_for_known_key_id(world: World) -> None:
    forged = world.full_key[:-4] + ("aaaa" if not world.full_key.endswith("aaaa") else "bbbb")
    response = await world.stub.Check(check_request({"x-api-key": forged}, world.api_id))
    assert problem(response)["reason"] == "key_invalid"


async def test_revoked_key(world: World) -> None:
    response = await world.stub.Check(check_request({"x-api-key": world.revoked_key}, world.api_id))
    assert response.status.code == code_pb2.UNAUTHENTICATED
    body = problem(response)
    assert body["reason"] == "key_revoked"
    assert world.revoked_key not in response.SerializeToString().decode("utf-8", "replace")


async def test_pending_subscription(world: World) -> None:
    response = await world.stub.Check(check_request({"x-api-key": world.full_key}, world.pending_api_id))
    assert response.status.code == code_pb2.PERMISSION_DENIED
    assert response.denied_response.status.code == 403
    assert "www-authenticate" not in headers_of(response.denied_response.headers)
    assert problem(response)["reason"] == "subscription_pending_approval"
    fields = MessageToDict(response.dynamic_metadata)
    assert fields["application_id"] == world.application_id
    assert fields["key_id"] == world.key_id


async def test_unknown_api_is_404(world: World) -> None:
    response = await world.stub.Check(check_request({"x-api-key": world.full_key}, "api_nope"))
    assert response.status.code == code_pb2.NOT_FOUND
    assert response.denied_response.status.code == 404
    assert problem(response)["reason"] == "api_not_found"


@pytest.mark.parametrize("ip", ["203.0.113.77", "::ffff:203.0.113.77"])
async def test_blocked_client(world: World, ip: str) -> None:
    response = await world.stub.Check(check_request({"x-api-key": world.full_key}, world.api_id, ip=ip))
    assert response.status.code == code_pb2.PERMISSION_DENIED
    assert problem(response)["reason"] == "client_blocked"


@pytest.mark.parametrize(
    "request_message",
    [
        external_auth_pb2.CheckRequest(),
        external_auth_pb2.CheckRequest(attributes=attribute_context_pb2.AttributeContext()),
        check_request({"x-api-key": "tw_whatever"}, api_id=None),
    ],
    ids=["empty", "empty-attributes", "no-context-extensions"],
)
async def test_malformed_check_requests_get_a_defined_deny(
    world: World, request_message: external_auth_pb2.CheckRequest
) -> None:
    response = await world.stub.Check(request_message)
    assert response.status.code == code_pb2.NOT_FOUND
    body = problem(response)
    assert body["reason"] == "api_not_found"


async def test_no_source_address_still_decides(world: World) -> None:
    request = check_request({"x-api-key": world.full_key}, world.api_id)
    request.attributes.ClearField("source")
    response = await world.stub.Check(request)
    assert response.status.code == code_pb2.OK


async def test_unexpected_error_fails_closed(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_args: object) -> None:
        raise RuntimeError(world.full_key)  # even an exception message carrying the key stays out of logs

    monkeypatch.setattr(servicer_module, "decide", boom)
    response = await world.stub.Check(check_request({"x-api-key": world.full_key}, world.api_id))
    assert response.status.code == code_pb2.INTERNAL
    assert response.denied_response.status.code == 500
    assert problem(response)["reason"] == "internal_error"


async def test_not_ready_index_is_503() -> None:
    index = KeyIndex(Database("sqlite:///:memory:"))  # never reloaded
    servicer = AuthorizationServicer(index, SECRET)
    response = await servicer.Check(check_request({"x-api-key": new_key().full_key}, "api_x"), None)  # type: ignore[arg-type]
    assert response.status.code == code_pb2.UNAVAILABLE
    assert response.denied_response.status.code == 503
    assert problem(response)["reason"] == "service_unavailable"


async def test_reload_changes_answers(world: World, database: Database) -> None:
    request = check_request({"x-api-key": world.full_key}, world.api_id)
    assert (await world.stub.Check(request)).status.code == code_pb2.OK
    async with database.session() as session:
        session.add(schema.BlockRule(id=schema.new_id("blk"), target="API_KEY", value=world.key_id))
        await database.record_change(session)
        await session.commit()
    await world.index.load_all()
    response = await world.stub.Check(request)
    assert problem(response)["reason"] == "key_blocked"


async def test_logs_never_contain_the_key(
    world: World, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    for headers, api_id in [
        ({"x-api-key": world.full_key}, world.api_id),
        ({"x-api-key": world.full_key}, world.pending_api_id),
        ({"x-api-key": world.revoked_key}, world.api_id),
        ({"authorization": "Bearer " + world.full_key + "x"}, world.api_id),
        ({"x-api-key": world.full_key}, "api_nope"),
    ]:
        await world.stub.Check(check_request(headers, api_id))

    def boom(*_args: object) -> None:
        raise RuntimeError(world.full_key)

    monkeypatch.setattr(servicer_module, "decide", boom)
    await world.stub.Check(check_request({"x-api-key": world.full_key}, world.api_id))

    text = logged_text(caplog.records)
    assert "reason=subscription_pending_approval" in text and world.key_id in text
    assert "reason=key_revoked" in text
    assert "Check failed: RuntimeError" in text
    for secret in (world.full_key, world.revoked_key):
        assert secret.rsplit("_", 1)[1] not in text
    assert all(record.exc_info is None for record in caplog.records)
