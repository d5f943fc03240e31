"""StoreService: the admin gRPC face of the store repository. Thin: protos in, rows out, conversions here."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import cast

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from google.protobuf.message import Message

from keymgr import keys
from keymgr.store import StoreRepository, key_state
from tollway.errors import InvalidArgument, map_grpc_errors
from tollway.protoconv import duration, mask_fields, subscription_to_proto, timestamp
from tollway.schema import ApiKey, Application, BlockRule
from tollway.store.v1 import store_pb2, store_pb2_grpc

_SUBSCRIPTION_STATE_PREFIX = "SUBSCRIPTION_STATE_"
_API_KEY_STATE_PREFIX = "API_KEY_STATE_"
_BLOCK_TARGET_PREFIX = "BLOCK_TARGET_"


def _enum_value(enum: EnumTypeWrapper, prefix: str, name: str) -> int:
    """The proto enum number for a stored state string; UNSPECIFIED for one the proto lacks.
    Value() is typed as a plain int: callers cast it to their enum, as it is one of its numbers."""
    try:
        return enum.Value(prefix + name)
    except ValueError:
        return 0


def _enum_name(enum: EnumTypeWrapper, prefix: str, number: int, field: str) -> str:
    """The stored string for a proto enum number; "" for UNSPECIFIED."""
    if number == 0:
        return ""
    try:
        return enum.Name(number).removeprefix(prefix)
    except ValueError:
        raise InvalidArgument(f"{field} has an unknown value {number}") from None


def _optional_duration(request: Message, field: str) -> timedelta | None:
    """None when the Duration field is unset, so "unset" and "zero" stay distinct."""
    if not request.HasField(field):
        return None
    value: Duration = getattr(request, field)
    try:
        return duration(value, field)
    except OverflowError:
        raise InvalidArgument(f"{field} is out of range") from None


def application_to_proto(application: Application) -> store_pb2.Application:
    return store_pb2.Application(
        id=application.id,
        name=application.name,
        owner=application.owner,
        description=application.description,
        create_time=timestamp(application.created_at),
        delete_time=timestamp(application.deleted_at),
    )


def api_key_to_proto(api_key: ApiKey, now: datetime) -> store_pb2.ApiKey:
    """The key's public record; its state is computed against `now`. Never carries the secret."""
    return store_pb2.ApiKey(
        key_id=api_key.key_id,
        application_id=api_key.application_id,
        name=api_key.name,
        state=cast(
            "store_pb2.ApiKeyState",
            _enum_value(store_pb2.ApiKeyState, _API_KEY_STATE_PREFIX, key_state(api_key, now)),
        ),
        create_time=timestamp(api_key.created_at),
        expire_time=timestamp(api_key.expires_at),
        revoke_time=timestamp(api_key.revoked_at),
        rotated_from_key_id=api_key.rotated_from or "",
        display=keys.display(api_key.key_id),
    )


def block_rule_to_proto(rule: BlockRule) -> store_pb2.BlockRule:
    return store_pb2.BlockRule(
        id=rule.id,
        target=cast(
            "store_pb2.BlockTarget", _enum_value(store_pb2.BlockTarget, _BLOCK_TARGET_PREFIX, rule.target)
        ),
        value=rule.value,
        reason=rule.reason,
        create_time=timestamp(rule.created_at),
    )


@map_grpc_errors
class StoreServicer(store_pb2_grpc.StoreServiceServicer):
    def __init__(self, store: StoreRepository) -> None:
        self._store = store

    # Applications

    async def CreateApplication(
        self,
        request: store_pb2.CreateApplicationRequest,
        context: grpc.aio.ServicerContext[
            store_pb2.CreateApplicationRequest, store_pb2.CreateApplicationResponse
        ],
    ) -> store_pb2.CreateApplicationResponse:
        # id and the timestamps are output only and ignored here.
        given = request.application
        application = await self._store.create_application(given.name, given.owner, given.description)
        return store_pb2.CreateApplicationResponse(application=application_to_proto(application))

    async def GetApplication(
        self,
        request: store_pb2.GetApplicationRequest,
        context: grpc.aio.ServicerContext[store_pb2.GetApplicationRequest, store_pb2.GetApplicationResponse],
    ) -> store_pb2.GetApplicationResponse:
        application = await self._store.get_application(request.id)
        return store_pb2.GetApplicationResponse(application=application_to_proto(application))

    async def ListApplications(
        self,
        request: store_pb2.ListApplicationsRequest,
        context: grpc.aio.ServicerContext[
            store_pb2.ListApplicationsRequest, store_pb2.ListApplicationsResponse
        ],
    ) -> store_pb2.ListApplicationsResponse:
        applications = await self._store.list_applications(request.owner, request.include_deleted)
        return store_pb2.ListApplicationsResponse(
            applications=[application_to_proto(a) for a in applications]
        )

    async def UpdateApplication(
        self,
        request: store_pb2.UpdateApplicationRequest,
        context: grpc.aio.ServicerContext[
            store_pb2.UpdateApplicationRequest, store_pb2.UpdateApplicationResponse
        ],
    ) -> store_pb2.UpdateApplicationResponse:
        fields = mask_fields(request.update_mask, ("name", "owner", "description"))
        changes = {name: str(getattr(request.application, name)) for name in fields}
        application = await self._store.update_application(request.application.id, changes)
        return store_pb2.UpdateApplicationResponse(application=application_to_proto(application))

    async def DeleteApplication(
        self,
        request: store_pb2.DeleteApplicationRequest,
        context: grpc.aio.ServicerContext[
            store_pb2.DeleteApplicationRequest, store_pb2.DeleteApplicationResponse
        ],
    ) -> store_pb2.DeleteApplicationResponse:
        await self._store.delete_application(request.id)
        return store_pb2.DeleteApplicationResponse()

    # Subscriptions

    async def CreateSubscription(
        self,
        request: store_pb2.CreateSubscriptionRequest,
        context: grpc.aio.ServicerContext[
            store_pb2.CreateSubscriptionRequest, store_pb2.CreateSubscriptionResponse
        ],
    ) -> store_pb2.CreateSubscriptionResponse:
        subscription = await self._store.create_subscription(
            request.application_id, request.api_id, request.plan_id, request.billing_anchor_day
        )
        return store_pb2.CreateSubscriptionResponse(subscription=subscription_to_proto(subscription))

    async def GetSubscription(
        self,
        request: store_pb2.GetSubscriptionRequest,
        context: grpc.aio.ServicerContext[
            store_pb2.GetSubscriptionRequest, store_pb2.GetSubscriptionResponse
        ],
    ) -> store_pb2.GetSubscriptionResponse:
        subscription = await self._store.get_subscription(request.id)
        return store_pb2.GetSubscriptionResponse(subscription=subscription_to_proto(subscription))

    async def ListSubscriptions(
        self,
        request: store_pb2.ListSubscriptionsRequest,
        context: grpc.aio.ServicerContext[
            store_pb2.ListSubscriptionsRequest, store_pb2.ListSubscriptionsResponse
        ],
    ) -> store_pb2.ListSubscriptionsResponse:
        state = _enum_name(store_pb2.SubscriptionState, _SUBSCRIPTION_STATE_PREFIX, request.state, "state")
        subscriptions = await self._store.list_subscriptions(request.application_id, request.api_id, state)
        return store_pb2.ListSubscriptionsResponse(
            subscriptions=[subscription_to_proto(s) for s in subscriptions]
        )

    async def BlockSubscription(
        self,
        request: store_pb2.BlockSubscriptionRequest,
        context: grpc.aio.ServicerContext[
            store_pb2.BlockSubscriptionRequest, store_pb2.BlockSubscriptionResponse
        ],
    ) -> store_pb2.BlockSubscriptionResponse:
        subscription = await self._store.block_subscription(request.id, request.reason)
        return store_pb2.BlockSubscriptionResponse(subscription=subscription_to_proto(subscription))

    async def UnblockSubscription(
        self,
        request: store_pb2.UnblockSubscriptionRequest,
        context: grpc.aio.ServicerContext[
            store_pb2.UnblockSubscriptionRequest, store_pb2.UnblockSubscriptionResponse
        ],
    ) -> store_pb2.UnblockSubscriptionResponse:
        subscription = await self._store.unblock_subscription(request.id)
        return store_pb2.UnblockSubscriptionResponse(subscription=subscription_to_proto(subscription))

    async def CancelSubscription(
        self,
        request: store_pb2.CancelSubscriptionRequest,
        context: grpc.aio.ServicerContext[
            store_pb2.CancelSubscriptionRequest, store_pb2.CancelSubscriptionResponse
        ],
    ) -> store_pb2.CancelSubscriptionResponse:
        subscription = await self._store.cancel_subscription(request.id)
        return store_pb2.CancelSubscriptionResponse(subscription=subscription_to_proto(subscription))

    # API keys

    async def CreateApiKey(
        self,
        request: store_pb2.CreateApiKeyRequest,
        context: grpc.aio.ServicerContext[store_pb2.CreateApiKeyRequest, store_pb2.CreateApiKeyResponse],
    ) -> store_pb2.CreateApiKeyResponse:
        issued = await self._store.create_api_key(
            request.application_id, request.name, _optional_duration(request, "ttl")
        )
        return store_pb2.CreateApiKeyResponse(
            api_key=api_key_to_proto(issued.api_key, self._store.now()), key=issued.key
        )

    async def GetApiKey(
        self,
        request: store_pb2.GetApiKeyRequest,
        context: grpc.aio.ServicerContext[store_pb2.GetApiKeyRequest, store_pb2.GetApiKeyResponse],
    ) -> store_pb2.GetApiKeyResponse:
        api_key = await self._store.get_api_key(request.key_id)
        return store_pb2.GetApiKeyResponse(api_key=api_key_to_proto(api_key, self._store.now()))

    async def ListApiKeys(
        self,
        request: store_pb2.ListApiKeysRequest,
        context: grpc.aio.ServicerContext[store_pb2.ListApiKeysRequest, store_pb2.ListApiKeysResponse],
    ) -> store_pb2.ListApiKeysResponse:
        api_keys = await self._store.list_api_keys(request.application_id)
        now = self._store.now()
        return store_pb2.ListApiKeysResponse(api_keys=[api_key_to_proto(k, now) for k in api_keys])

    async def RotateApiKey(
        self,
        request: store_pb2.RotateApiKeyRequest,
        context: grpc.aio.ServicerContext[store_pb2.RotateApiKeyRequest, store_pb2.RotateApiKeyResponse],
    ) -> store_pb2.RotateApiKeyResponse:
        rotated = await self._store.rotate_api_key(
            request.key_id, _optional_duration(request, "grace_period"), _optional_duration(request, "ttl")
        )
        now = self._store.now()
        return store_pb2.RotateApiKeyResponse(
            api_key=api_key_to_proto(rotated.api_key, now),
            key=rotated.key,
            previous_api_key=api_key_to_proto(rotated.previous, now),
        )

    async def RevokeApiKey(
        self,
        request: store_pb2.RevokeApiKeyRequest,
        context: grpc.aio.ServicerContext[store_pb2.RevokeApiKeyRequest, store_pb2.RevokeApiKeyResponse],
    ) -> store_pb2.RevokeApiKeyResponse:
        api_key = await self._store.revoke_api_key(request.key_id)
        return store_pb2.RevokeApiKeyResponse(api_key=api_key_to_proto(api_key, self._store.now()))

    # Block rules

    async def CreateBlockRule(
        self,
        request: store_pb2.CreateBlockRuleRequest,
        context: grpc.aio.ServicerContext[
            store_pb2.CreateBlockRuleRequest, store_pb2.CreateBlockRuleResponse
        ],
    ) -> store_pb2.CreateBlockRuleResponse:
        given = request.block_rule
        target = _enum_name(store_pb2.BlockTarget, _BLOCK_TARGET_PREFIX, given.target, "block_rule.target")
        rule = await self._store.create_block_rule(target, given.value, given.reason)
        return store_pb2.CreateBlockRuleResponse(block_rule=block_rule_to_proto(rule))

    async def ListBlockRules(
        self,
        request: store_pb2.ListBlockRulesRequest,
        context: grpc.aio.ServicerContext[store_pb2.ListBlockRulesRequest, store_pb2.ListBlockRulesResponse],
    ) -> store_pb2.ListBlockRulesResponse:
        rules = await self._store.list_block_rules()
        return store_pb2.ListBlockRulesResponse(block_rules=[block_rule_to_proto(r) for r in rules])

    async def DeleteBlockRule(
        self,
        request: store_pb2.DeleteBlockRuleRequest,
        context: grpc.aio.ServicerContext[
            store_pb2.DeleteBlockRuleRequest, store_pb2.DeleteBlockRuleResponse
        ],
    ) -> store_pb2.DeleteBlockRuleResponse:
        await self._store.delete_block_rule(request.id)
        return store_pb2.DeleteBlockRuleResponse()
