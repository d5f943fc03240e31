"""Block rules in the store: refusing every request to an API, from an application or API key, or
from a client address range.

Kept apart from the resources they name because a rule points at its target rather than belonging to
it: it is checked only to exist when the rule is made (a CIDR is only normalized), and the rule has its
own id and lifetime. Targets are tollway.vocabulary.BlockTarget (block_rule.target; BLOCK_TARGET_<name>
in the store proto).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from keymgr.validation import REASON_MAX, check_length, require, require_key_id, shown
from tollway.db import Database
from tollway.errors import AlreadyExists, InvalidArgument, NotFound
from tollway.lifecycle import SubscriptionLifecycle
from tollway.schema import Api, ApiKey, Application, BlockRule, new_id
from tollway.vocabulary import BlockTarget

log = logging.getLogger(__name__)

BLOCK_TARGETS: tuple[str, ...] = tuple(BlockTarget)


def normalized_cidr(value: str) -> str:
    """An address or CIDR in normalized network form (10.1.2.3/8 → 10.0.0.0/8), else INVALID_ARGUMENT."""
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise InvalidArgument(
            f"CLIENT_CIDR value must be an IPv4 or IPv6 address or CIDR, got {shown(value)}"
        ) from None


class BlockRuleRepository:
    """Block rules; writes run in `lifecycle`'s transaction (change record first, `on_commit` after)."""

    def __init__(self, db: Database, lifecycle: SubscriptionLifecycle, clock: Callable[[], datetime]) -> None:
        self._db = db
        self._lifecycle = lifecycle
        self._clock = clock

    async def create_block_rule(self, target: str, value: str, reason: str = "") -> BlockRule:
        """A rule refusing every request to an API, from an application or key, or from a client
        address range. `value` is an API id, application id, key id, or an address/CIDR (stored in
        normalized form, e.g. 10.0.0.0/8)."""
        if target not in BLOCK_TARGETS:
            raise InvalidArgument(f"target must be one of {', '.join(BLOCK_TARGETS)}")
        value = require(value, "value")
        reason = reason.strip()
        check_length(reason, "reason", REASON_MAX)
        if target == BlockTarget.API_KEY:
            value = require_key_id(value, "value")
        elif target == BlockTarget.CLIENT_CIDR:
            value = normalized_cidr(value)
        async with self._lifecycle.write() as session:
            await _check_target_exists(session, target, value)
            duplicate = await session.exec(
                select(BlockRule.id).where(BlockRule.target == target, BlockRule.value == value)
            )
            duplicate_id = duplicate.first()
            if duplicate_id is not None:
                raise AlreadyExists(f"{target} {value!r} is already blocked by rule {duplicate_id}")
            rule = BlockRule(
                id=new_id("block"), target=target, value=value, reason=reason, created_at=self._clock()
            )
            session.add(rule)
            await self._lifecycle.commit(session)
        log.info("created block rule %s (%s %s)", rule.id, target, value)
        return rule

    async def list_block_rules(self) -> list[BlockRule]:
        statement = select(BlockRule).order_by(col(BlockRule.created_at), col(BlockRule.id))
        async with self._db.session() as session:
            return list((await session.exec(statement)).all())

    async def delete_block_rule(self, rule_id: str) -> None:
        rule_id = require(rule_id, "id")
        async with self._lifecycle.write() as session:
            rule = await session.get(BlockRule, rule_id, with_for_update=True)
            if rule is None:
                raise NotFound(f"block rule {shown(rule_id)} not found")
            await session.delete(rule)
            await self._lifecycle.commit(session)
        log.info("deleted block rule %s", rule_id)


async def _check_target_exists(session: AsyncSession, target: str, value: str) -> None:
    if target == BlockTarget.API and await session.get(Api, value) is None:
        raise NotFound(f"API {shown(value)} not found")
    if target == BlockTarget.APPLICATION and await session.get(Application, value) is None:
        raise NotFound(f"application {shown(value)} not found")
    if target == BlockTarget.API_KEY and await session.get(ApiKey, value) is None:
        raise NotFound(f"API key {value!r} not found")
