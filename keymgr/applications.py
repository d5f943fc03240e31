"""Applications in the store: create, read, list, update and soft-delete.

An application is the parent of subscriptions and API keys, so this module also holds the two loaders
the other areas use to check a parent (`load_application`, `live_application`): the NOT_FOUND /
FAILED_PRECONDITION wording for a missing or deleted application is then written once. Deleting an
application revokes its keys and cancels its live subscriptions (through the core lifecycle's
`transition`) in the same transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from keymgr.validation import check_length, require, shown
from tollway.db import Database
from tollway.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from tollway.lifecycle import LIVE_SUBSCRIPTION_STATES, Action, Actor, SubscriptionLifecycle, transition
from tollway.schema import ApiKey, Application, Subscription, new_id

log = logging.getLogger(__name__)

APPLICATION_NAME_MAX = 100
APPLICATION_OWNER_MAX = 200
APPLICATION_DESCRIPTION_MAX = 2000

APPLICATION_FIELDS = ("name", "owner", "description")
_FIELD_LIMITS = {
    "name": APPLICATION_NAME_MAX,
    "owner": APPLICATION_OWNER_MAX,
    "description": APPLICATION_DESCRIPTION_MAX,
}


async def load_application(
    session: AsyncSession, application_id: str, for_update: bool = False
) -> Application:
    """The application with this id, deleted or not (row-locked when `for_update`), else NOT_FOUND."""
    statement = select(Application).where(Application.id == application_id)
    if for_update:
        statement = statement.with_for_update()
    application = (await session.exec(statement)).first()
    if application is None:
        raise NotFound(f"application {shown(application_id)} not found")
    return application


async def live_application(session: AsyncSession, application_id: str) -> Application:
    """A parent application: NOT_FOUND when missing, FAILED_PRECONDITION when deleted."""
    application = await load_application(session, require(application_id, "application_id"))
    if application.deleted_at is not None:
        raise FailedPrecondition(f"application {application_id!r} is deleted")
    return application


class ApplicationRepository:
    """Applications; writes run in `lifecycle`'s transaction (change record first, `on_commit` after)."""

    def __init__(self, db: Database, lifecycle: SubscriptionLifecycle, clock: Callable[[], datetime]) -> None:
        self._db = db
        self._lifecycle = lifecycle
        self._clock = clock

    async def create_application(self, name: str, owner: str = "", description: str = "") -> Application:
        name, owner = require(name, "name"), owner.strip()
        _check_fields({"name": name, "owner": owner, "description": description})
        async with self._lifecycle.write() as session:
            await _check_name_free(session, name, owner, exclude_id="")
            application = Application(
                id=new_id("app"), name=name, owner=owner, description=description, created_at=self._clock()
            )
            session.add(application)
            await self._lifecycle.commit(session)
        log.info("created application %s", application.id)
        return application

    async def get_application(self, application_id: str) -> Application:
        application_id = require(application_id, "id")
        async with self._db.session() as session:
            return await load_application(session, application_id)

    async def list_applications(self, owner: str = "", include_deleted: bool = False) -> list[Application]:
        statement = select(Application)
        if owner.strip():
            statement = statement.where(Application.owner == owner.strip())
        if not include_deleted:
            statement = statement.where(col(Application.deleted_at).is_(None))
        statement = statement.order_by(col(Application.created_at), col(Application.id))
        async with self._db.session() as session:
            return list((await session.exec(statement)).all())

    async def update_application(self, application_id: str, changes: Mapping[str, str]) -> Application:
        """Replaces the given fields (a subset of name, owner, description) of a live application."""
        application_id = require(application_id, "id")
        unknown = sorted(set(changes) - set(APPLICATION_FIELDS))
        if unknown:
            raise InvalidArgument(f"cannot update application fields: {', '.join(unknown)}")
        changes = dict(changes)
        if "name" in changes:
            changes["name"] = require(changes["name"], "name")
        if "owner" in changes:
            changes["owner"] = changes["owner"].strip()
        _check_fields(changes)
        async with self._lifecycle.write() as session:
            application = await load_application(session, application_id, for_update=True)
            if application.deleted_at is not None:
                raise FailedPrecondition(f"application {application_id!r} is deleted")
            name = changes.get("name", application.name)
            owner = changes.get("owner", application.owner)
            await _check_name_free(session, name, owner, exclude_id=application_id)
            for field_name, value in changes.items():
                setattr(application, field_name, value)
            session.add(application)
            await self._lifecycle.commit(session)
        log.info("updated application %s", application_id)
        return application

    async def delete_application(self, application_id: str) -> Application:
        """Soft delete: marks the application deleted, revokes its keys and cancels its live
        subscriptions in one transaction. Deleting a deleted application changes nothing."""
        application_id = require(application_id, "id")
        async with self._lifecycle.write() as session:
            application = await load_application(session, application_id, for_update=True)
            if application.deleted_at is not None:
                return application
            now = self._clock()
            application.deleted_at = now
            session.add(application)
            live_keys = await session.exec(
                select(ApiKey)
                .where(ApiKey.application_id == application_id, col(ApiKey.revoked_at).is_(None))
                .with_for_update()
            )
            for api_key in live_keys.all():
                api_key.revoked_at = now
                session.add(api_key)
            live_subscriptions = await session.exec(
                select(Subscription)
                .where(
                    Subscription.application_id == application_id,
                    col(Subscription.state).in_(LIVE_SUBSCRIPTION_STATES),
                )
                .with_for_update()
            )
            for subscription in live_subscriptions.all():
                await transition(
                    self._db, session, subscription, Action.CANCEL, Actor.SYSTEM,
                    at=now, reason="application deleted",
                )  # fmt: skip
            await self._lifecycle.commit(session)
        log.info("deleted application %s", application_id)
        return application


def _check_fields(values: Mapping[str, str]) -> None:
    for field_name, value in values.items():
        check_length(value, field_name, _FIELD_LIMITS[field_name])


async def _check_name_free(session: AsyncSession, name: str, owner: str, exclude_id: str) -> None:
    statement = select(Application.id).where(
        Application.name == name,
        Application.owner == owner,
        col(Application.deleted_at).is_(None),
        Application.id != exclude_id,
    )
    if (await session.exec(statement)).first() is not None:
        raise AlreadyExists(f"owner {owner!r} already has an application named {name!r}")
