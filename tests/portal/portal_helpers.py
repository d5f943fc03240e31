"""The consumer API as a client sees it: accounts signed up through AccountService, calls through
ConsumerService with the account's session token, on the stack's consumer port."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import grpc

from tests.e2e.harness import Stack
from tollway.catalog.v1 import catalog_pb2
from tollway.portal.v1 import portal_pb2 as pb
from tollway.portal.v1 import portal_pb2_grpc

PASSWORD = "portal test password"


@dataclass
class Consumer:
    email: str
    account_id: str
    token: str
    channel: grpc.Channel

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)

    @property
    def service(self) -> portal_pb2_grpc.ConsumerServiceStub:
        return portal_pb2_grpc.ConsumerServiceStub(self.channel)

    def call(self, name: str, request: Any) -> Any:
        return getattr(self.service, name)(request, metadata=self.metadata, timeout=10)


def sign_up(stack: Stack, name: str) -> Consumer:
    channel = grpc.insecure_channel(stack.settings.portal_grpc_addr)
    email = f"{name}-{secrets.token_hex(3)}@example.com"
    accounts = portal_pb2_grpc.AccountServiceStub(channel)
    response = accounts.SignUp(
        pb.SignUpRequest(email=email, password=PASSWORD, display_name=name), timeout=10
    )
    return Consumer(email, response.account.id, response.session_token, channel)


def published_api(
    stack: Stack, name: str, approval: bool = False
) -> tuple[catalog_pb2.Api, catalog_pb2.Plan]:
    plan = stack.create_plan(
        f"{name}-plan",
        approval_required=approval,
        limits=catalog_pb2.PlanLimits(requests_per_minute=100, monthly_quota=1000),
        pricing=catalog_pb2.PlanPricing(currency="EUR", recurring_fee="10.00", unit_price="0.01"),
    )
    api = stack.create_api(name, f"/{name}/v1", [plan.id])
    return api, plan
