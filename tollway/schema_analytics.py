"""The usage dimensions analytics reports (usage/details.py): requests per API resource (method and
route), response status code and destination (the upstream host that served them), per hour and day.
Part of the one schema (registered by tollway/db.py), beside tollway/schema.py's usage_window, whose
counts it refines; written in the same transaction as those counts, under the same dedupe rows."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime
from sqlmodel import Field, SQLModel


class UsageDetail(SQLModel, table=True):
    __tablename__ = "usage_detail"

    granularity: str = Field(primary_key=True)  # hour | day
    window_start: datetime = Field(sa_column=Column(DateTime(timezone=True), primary_key=True))
    api_id: str = Field(primary_key=True)
    subscription_id: str = Field(primary_key=True, default="")
    application_id: str = Field(primary_key=True, default="")
    # GET, POST, ...; "OTHER" for anything else.
    method: str = Field(primary_key=True, default="")
    # The request path below nothing in particular, with id-like segments as {id} (usage/details.py).
    route: str = Field(primary_key=True, default="")
    status_code: int = Field(primary_key=True, default=0)
    # host:port of the upstream that served the request; "" when none did (refused, throttled).
    destination: str = Field(primary_key=True, default="")
    requests: int = 0
    latency_us_sum: int = 0
