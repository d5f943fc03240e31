"""Isolation through the consumer gRPC API on a whole running process: account A cannot read or change
account B's applications, subscriptions, keys, usage or invoices by id, on any RPC; the answer is
NOT_FOUND with the very message a missing id gets (no oracle), and B's records stay as they were."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest

from tests.e2e.harness import Stack
from tests.portal.portal_helpers import Consumer, published_api, sign_up
from tollway.billing.v1 import billing_pb2, billing_pb2_grpc
from tollway.portal.v1 import portal_pb2 as pb
from tollway.store.v1 import store_pb2


@dataclass
class Owned:
    consumer: Consumer
    application_id: str
    subscription_id: str
    key_id: str
    invoice_id: str
    api_id: str
    plan_id: str


@pytest.fixture(scope="module")
def accounts(portal_stack: Stack) -> tuple[Owned, Owned]:
    api, plan = published_api(portal_stack, "isolated")
    owned = []
    for name in ("alice", "bob"):
        consumer = sign_up(portal_stack, name)
        app = consumer.call("CreateApplication", pb.CreateApplicationRequest(name=f"{name}-app")).application
        sub = consumer.call(
            "CreateSubscription",
            pb.CreateSubscriptionRequest(application_id=app.id, api_id=api.id, plan_id=plan.id),
        ).subscription
        key = consumer.call("CreateApiKey", pb.CreateApiKeyRequest(application_id=app.id, name="k")).api_key
        billing = billing_pb2_grpc.BillingServiceStub(grpc.insecure_channel(portal_stack.settings.admin_addr))
        month = datetime.now(UTC).strftime("%Y-%m")
        invoices = portal_stack.call(
            billing.GenerateInvoices,
            billing_pb2.GenerateInvoicesRequest(billing_month=month, application_id=app.id),
        ).invoices
        assert invoices, "the invoice run made no invoice for the subscription"
        owned.append(Owned(consumer, app.id, sub.id, key.key_id, invoices[0].id, api.id, plan.id))
    return owned[0], owned[1]


FAKE = {
    "application": "app_zzzzzzzzzzzz",
    "subscription": "sub_zzzzzzzzzzzz",
    "key": "zzzzzzzzzzzz",
    "invoice": "inv_zzzzzzzzzzzz",
}


def _cap(scope: str, target_id: str) -> billing_pb2.SpendCap:
    return billing_pb2.SpendCap(scope=scope, target_id=target_id, kind="REQUESTS", limit="1")


# RPC, what it names, and its request for an id of that kind.
CASES: list[tuple[str, str, Callable[[Owned, str], Any]]] = [
    ("GetApplication", "application", lambda o, i: pb.GetApplicationRequest(id=i)),
    ("UpdateApplication", "application", lambda o, i: pb.UpdateApplicationRequest(id=i, name="stolen")),
    ("DeleteApplication", "application", lambda o, i: pb.DeleteApplicationRequest(id=i)),
    (
        "CreateSubscription",
        "application",
        lambda o, i: pb.CreateSubscriptionRequest(application_id=i, api_id=o.api_id, plan_id=o.plan_id),
    ),
    ("ListSubscriptions", "application", lambda o, i: pb.ListSubscriptionsRequest(application_id=i)),
    ("CreateApiKey", "application", lambda o, i: pb.CreateApiKeyRequest(application_id=i, name="stolen")),
    ("ListApiKeys", "application", lambda o, i: pb.ListApiKeysRequest(application_id=i)),
    ("ListUsageWindows", "application", lambda o, i: pb.ListUsageWindowsRequest(application_id=i)),
    ("ListInvoices", "application", lambda o, i: pb.ListInvoicesRequest(application_id=i)),
    ("GetSubscription", "subscription", lambda o, i: pb.GetSubscriptionRequest(id=i)),
    ("CancelSubscription", "subscription", lambda o, i: pb.CancelSubscriptionRequest(id=i)),
    ("ListUsageWindows", "subscription", lambda o, i: pb.ListUsageWindowsRequest(subscription_id=i)),
    ("GetQuota", "subscription", lambda o, i: pb.GetQuotaRequest(subscription_id=i)),
    ("GetApiKey", "key", lambda o, i: pb.GetApiKeyRequest(key_id=i)),
    ("RotateApiKey", "key", lambda o, i: pb.RotateApiKeyRequest(key_id=i)),
    ("RevokeApiKey", "key", lambda o, i: pb.RevokeApiKeyRequest(key_id=i)),
    ("GetInvoice", "invoice", lambda o, i: pb.GetInvoiceRequest(id=i)),
    ("SetSpendCap", "application", lambda o, i: pb.SetSpendCapRequest(cap=_cap("APPLICATION", i))),
    ("SetSpendCap", "subscription", lambda o, i: pb.SetSpendCapRequest(cap=_cap("SUBSCRIPTION", i))),
    (
        "ClearSpendCap",
        "application",
        lambda o, i: pb.ClearSpendCapRequest(scope="APPLICATION", target_id=i, kind="REQUESTS"),
    ),
    ("ListSpendCaps", "application", lambda o, i: pb.ListSpendCapsRequest(application_id=i)),
    ("ListSpendCaps", "subscription", lambda o, i: pb.ListSpendCapsRequest(subscription_id=i)),
    ("ListAlerts", "application", lambda o, i: pb.ListAlertsRequest(application_id=i)),
    ("GetCredit", "application", lambda o, i: pb.GetCreditRequest(application_id=i)),
]


def _id_of(owned: Owned, kind: str) -> str:
    return {
        "application": owned.application_id,
        "subscription": owned.subscription_id,
        "key": owned.key_id,
        "invoice": owned.invoice_id,
    }[kind]


def _refusal(consumer: Consumer, rpc: str, request: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        consumer.call(rpc, request)
    return caught.value


@pytest.mark.parametrize(("rpc", "kind", "request_for"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_another_accounts_id_is_not_found_like_a_missing_one(
    accounts: tuple[Owned, Owned], rpc: str, kind: str, request_for: Callable[[Owned, str], Any]
) -> None:
    alice, bob = accounts
    theirs = _id_of(bob, kind)
    stolen = _refusal(alice.consumer, rpc, request_for(bob, theirs))
    missing = _refusal(alice.consumer, rpc, request_for(bob, FAKE[kind]))
    assert stolen.code() == missing.code() == grpc.StatusCode.NOT_FOUND, stolen.details()
    assert stolen.details().replace(theirs, "<id>") == missing.details().replace(FAKE[kind], "<id>")
    if rpc.startswith(("Get", "List")):
        # Her own id answers: the refusal is about ownership, not the request's shape.
        alice.consumer.call(rpc, request_for(alice, _id_of(alice, kind)))


def test_lists_hold_only_the_callers_records(accounts: tuple[Owned, Owned]) -> None:
    alice, _ = accounts
    apps = alice.consumer.call(
        "ListApplications", pb.ListApplicationsRequest(include_deleted=True)
    ).applications
    assert [a.id for a in apps] == [alice.application_id]
    subs = alice.consumer.call("ListSubscriptions", pb.ListSubscriptionsRequest()).subscriptions
    assert [s.id for s in subs] == [alice.subscription_id]
    keys = alice.consumer.call("ListApiKeys", pb.ListApiKeysRequest()).api_keys
    assert [k.key_id for k in keys] == [alice.key_id]
    invoices = alice.consumer.call("ListInvoices", pb.ListInvoicesRequest()).invoices
    assert [i.id for i in invoices] == [alice.invoice_id]


def test_refused_calls_changed_nothing_of_the_other_account(accounts: tuple[Owned, Owned]) -> None:
    alice, bob = accounts
    for rpc, kind, request_for in CASES:
        _refusal(alice.consumer, rpc, request_for(bob, _id_of(bob, kind)))
    app = bob.consumer.call("GetApplication", pb.GetApplicationRequest(id=bob.application_id)).application
    assert app.name == "bob-app" and not app.HasField("delete_time")
    sub = bob.consumer.call("GetSubscription", pb.GetSubscriptionRequest(id=bob.subscription_id)).subscription
    assert sub.state == store_pb2.SUBSCRIPTION_STATE_ACTIVE
    keys = bob.consumer.call("ListApiKeys", pb.ListApiKeysRequest(application_id=bob.application_id)).api_keys
    assert [(k.key_id, k.state) for k in keys] == [(bob.key_id, store_pb2.API_KEY_STATE_ACTIVE)]
    subs = bob.consumer.call("ListSubscriptions", pb.ListSubscriptionsRequest()).subscriptions
    assert [s.id for s in subs] == [bob.subscription_id]
    caps = bob.consumer.call("ListSpendCaps", pb.ListSpendCapsRequest(application_id=bob.application_id))
    assert list(caps.caps) == []


def test_every_consumer_rpc_needs_a_session(portal_stack: Stack, accounts: tuple[Owned, Owned]) -> None:
    alice, _ = accounts
    service = pb.DESCRIPTOR.services_by_name["ConsumerService"]
    for method in service.methods:
        request = pb.__dict__[method.input_type.name]()
        for metadata in ((), (("authorization", "Bearer not-a-session"),)):
            with pytest.raises(grpc.RpcError) as caught:
                getattr(alice.consumer.service, method.name)(request, metadata=metadata, timeout=10)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, method.name


def test_grpcurl_lists_and_calls_the_consumer_api_through_reflection(
    portal_stack: Stack, accounts: tuple[Owned, Owned]
) -> None:
    import json
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    alice, _ = accounts
    binary = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")
    addr = portal_stack.settings.portal_grpc_addr
    listed = subprocess.run([binary, "-plaintext", addr, "list"], capture_output=True, text=True, timeout=30)
    assert listed.returncode == 0, listed.stderr
    services = set(listed.stdout.split())
    assert {"tollway.portal.v1.AccountService", "tollway.portal.v1.ConsumerService"} <= services
    assert "tollway.store.v1.StoreService" not in services  # the admin's services stay on the admin port
    called = subprocess.run(
        [binary, "-plaintext", "-H", f"authorization: Bearer {alice.consumer.token}", addr,
         "tollway.portal.v1.ConsumerService/ListApplications"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert called.returncode == 0, called.stderr
    assert [a["id"] for a in json.loads(called.stdout)["applications"]] == [alice.application_id]
