"""Check in the fused mode (TOLLWAY_THROTTLE_MODE=authz) through a real grpc.aio server: the throttle's
real gate (memory counters) on the same database, answers compared with the default mode's Check."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from envoy.config.core.v3.base_pb2 import HeaderValue, HeaderValueOption
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from google.protobuf.json_format import MessageToDict
from google.rpc import code_pb2
from support import grpc_server

from keymgr.index import KeyIndex
from keymgr.process import Keymgr
from keymgr.servicer import AuthorizationServicer, add_authorization_service
from tests.keymgr.test_keymgr_check import SECRET, check_request, headers_of, seed
from tests.throttle.throttle_fixtures import FakeClock
from throttle.counters import MemoryCounterStore
from throttle.gate import ThrottleGate
from throttle.index import ThrottleIndex
from throttle.process import Throttle
from throttle.service import ThrottleService
from tollway import schema
from tollway.app.runner import TollwayProcess
from tollway.db import Database
from tollway.envoy_contract import DESCRIPTOR_KEYS
from tollway.errors import StartupRefused
from tollway.settings import Settings

NOW = datetime(2030, 6, 1, 12, 0, 15, tzinfo=UTC)
APPEND = HeaderValueOption.APPEND_IF_EXISTS_OR_ADD


@dataclass
class Fused:
    ids: dict[str, str]
    fused: external_auth_pb2_grpc.AuthorizationStub
    default: external_auth_pb2_grpc.AuthorizationStub
    throttle: ThrottleService
    keys: KeyIndex

    def request(self, key: str | None = None) -> external_auth_pb2.CheckRequest:
        return check_request({"x-api-key": key or self.ids["full_key"]}, self.ids["api_id"])

    async def used(self) -> int:
        report = await self.throttle.quota(self.ids["subscription_id"])
        return next(w.used for w in report.windows if w.window.name == "billing_period")


async def started(database: Database, **limits: Any) -> AsyncIterator[Fused]:
    ids = await seed(database)
    async with database.session() as session:
        plan = await session.get(schema.Plan, ids["plan_id"])
        assert plan is not None
        for name, value in limits.items():
            setattr(plan, name, value)
        await database.record_change(session)
        await session.commit()
    keys = KeyIndex(database)
    await keys.load_all()
    plans = ThrottleIndex(database)
    await plans.load_all()
    throttle = ThrottleService(plans, MemoryCounterStore(), clock=FakeClock(NOW))
    fused = AuthorizationServicer(keys, SECRET, clock=lambda: NOW, gate=ThrottleGate(throttle))
    default = AuthorizationServicer(keys, SECRET, clock=lambda: NOW)
    async with (
        grpc_server(lambda server: add_authorization_service(fused, server)) as fused_channel,
        grpc_server(lambda server: add_authorization_service(default, server)) as default_channel,
    ):
        yield Fused(
            ids,
            external_auth_pb2_grpc.AuthorizationStub(fused_channel),
            external_auth_pb2_grpc.AuthorizationStub(default_channel),
            throttle,
            keys,
        )


@pytest.fixture
async def world(database: Database) -> AsyncIterator[Fused]:
    async for fused in started(database, requests_per_minute=2):
        yield fused


@pytest.fixture
async def soft(database: Database) -> AsyncIterator[Fused]:
    async for fused in started(database, monthly_quota=1, quota_policy="SOFT"):
        yield fused


async def test_admitted_is_the_default_answer_plus_the_rate_limit_headers(world: Fused) -> None:
    answers = [await world.fused.Check(world.request()) for _ in range(2)]
    default = await world.default.Check(world.request())
    for remaining, answer in zip(("1", "0"), answers, strict=True):
        expected = external_auth_pb2.CheckResponse()
        expected.CopyFrom(default)
        for name, value in (
            ("x-ratelimit-limit", '2, 2;w=60;name="minute"'),
            ("x-ratelimit-remaining", remaining),
            ("x-ratelimit-reset", "45"),
        ):
            expected.ok_response.response_headers_to_add.add(
                header=HeaderValue(key=name, value=value), append_action=APPEND
            )
        assert answer == expected
    assert await world.used() == 2


async def test_over_the_limit_is_a_429_carrying_the_identity_for_the_access_log(world: Fused) -> None:
    for _ in range(2):
        await world.fused.Check(world.request())
    denied = await world.fused.Check(world.request())
    assert denied.status.code == code_pb2.RESOURCE_EXHAUSTED
    assert denied.denied_response.status.code == 429
    assert headers_of(denied.denied_response.headers) == {
        "retry-after": "45",
        "content-type": "application/problem+json",
        "x-envoy-ratelimited": "true",
        "x-ratelimit-limit": '2, 2;w=60;name="minute"',
        "x-ratelimit-remaining": "0",
        "x-ratelimit-reset": "45",
    }
    problem = json.loads(denied.denied_response.body)
    assert (problem["status"], problem["reason"], problem["window"]) == (429, "rate_limited", "minute")
    identity = MessageToDict((await world.default.Check(world.request())).dynamic_metadata)
    assert MessageToDict(denied.dynamic_metadata) == {
        **identity,
        "reason": "rate_limited",
        "window": "minute",
    }
    assert await world.used() == 2  # the refusal counted nothing


async def test_refused_keys_never_reach_the_limits(world: Fused) -> None:
    for key in ("tw_garbage", world.ids["revoked_key"]):
        refused = await world.fused.Check(world.request(key))
        assert refused == await world.default.Check(world.request(key))
        assert refused.denied_response.status.code == 401
    assert await world.used() == 0


async def test_beyond_a_soft_quota_the_answer_carries_the_overage(soft: Fused) -> None:
    first, beyond = [await soft.fused.Check(soft.request()) for _ in range(2)]
    identity = MessageToDict((await soft.default.Check(soft.request())).dynamic_metadata)
    assert MessageToDict(first.dynamic_metadata) == identity
    assert MessageToDict(beyond.dynamic_metadata) == {
        **identity,
        "overage": True,
        "overage_hits": 1.0,
        "window": "billing_period",
    }
    assert beyond.status.code == code_pb2.OK and not beyond.HasField("denied_response")


async def test_the_gate_gets_the_descriptor_the_route_would_send(world: Fused) -> None:
    seen: list[Any] = []

    class Recording(ThrottleGate):
        async def admit(self, descriptors: Any) -> Any:
            seen.append(descriptors)
            return await super().admit(descriptors)

    servicer = AuthorizationServicer(world.keys, SECRET, clock=lambda: NOW, gate=Recording(world.throttle))
    await servicer.Check(world.request(), None)  # type: ignore[arg-type]
    [(descriptor,)] = seen
    assert tuple(descriptor) == DESCRIPTOR_KEYS
    assert descriptor == {
        "subscription_id": world.ids["subscription_id"],
        "plan_id": world.ids["plan_id"],
        "application_id": world.ids["application_id"],
        "api_id": world.ids["api_id"],
    }


def test_the_process_hands_the_throttles_gate_to_keymgr(tmp_path: Path) -> None:
    def process(components: str) -> TollwayProcess:
        return TollwayProcess(
            Settings.from_env(
                {
                    "TOLLWAY_DATA_DIR": str(tmp_path),
                    "TOLLWAY_THROTTLE_MODE": "authz",
                    "TOLLWAY_COMPONENTS": components,
                }
            )
        )

    both = process("keymgr,throttle")
    keymgr, throttle = both.find(Keymgr), both.find(Throttle)
    assert keymgr is not None and throttle is not None
    assert keymgr.gate is throttle.gate is not None
    with pytest.raises(StartupRefused, match="must run throttle too"):
        process("keymgr")
    assert process("throttle").find(Throttle) is not None  # limits without Check: nothing to hand over
