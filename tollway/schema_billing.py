"""Tables of billing/: invoices and their lines, billed segments, credit notes, gapless numbering,
idempotency records, the event outbox and webhooks (endpoints, deliveries, attempts). Part of the one
schema (registered with tollway/schema.py's tables by tollway/db.py).

Money is canonical decimal text; timestamps are UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, Integer, text
from sqlmodel import Field, SQLModel

from tollway.schema import timestamp_column

# --- billing/ (issue 5): invoices, billed usage, numbering, subscription history ----------------------

_OPEN_INVOICE_SQL = "state != 'VOID'"


class Invoice(SQLModel, table=True):
    """One application's charges in one currency for one billing period. DRAFT → FINALIZED (numbered,
    immutable) → VOID (kept on record, number kept)."""

    __tablename__ = "invoice"
    __table_args__ = (
        # One open (draft or finalized) invoice per customer, currency and period.
        Index(
            "uq_invoice_open_period",
            "application_id",
            "currency",
            "period_start",
            "period_end",
            unique=True,
            sqlite_where=text(_OPEN_INVOICE_SQL),
            postgresql_where=text(_OPEN_INVOICE_SQL),
        ),
    )

    id: str = Field(primary_key=True)
    number: str | None = Field(default=None, unique=True)
    state: str = Field(default="DRAFT", index=True)  # DRAFT | FINALIZED | VOID
    application_id: str = Field(index=True)
    currency: str
    period_start: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, index=True))
    period_end: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    total: str = "0"
    # COMPLETE | INCOMPLETE | UNKNOWN: whether every Envoy node's usage for the period had arrived.
    usage_completeness: str = "UNKNOWN"
    completeness_note: str = ""
    created_at: datetime = timestamp_column()
    updated_at: datetime = timestamp_column()
    finalized_at: datetime | None = timestamp_column(nullable=True)
    voided_at: datetime | None = timestamp_column(nullable=True)
    void_reason: str = ""
    # Sum of the charged lines (gross where a rate is inclusive); `total` adds the exclusive taxes.
    subtotal: str = "0"
    tax_total: str = "0"
    # The billing account's details as they were at finalization (billing/accounts.py); drafts keep {}
    # and show the account's current details.
    customer: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # What prepaid credit paid of `total` and what is left to pay, fixed at finalization (decimal text);
    # NULL on drafts (computed when read from the credit burns of the period) and on invoices finalized
    # before these were stored.
    paid_from_credit: str | None = Field(default=None, nullable=True)
    amount_due: str | None = Field(default=None, nullable=True)


class InvoiceCompletenessOverride(SQLModel, table=True):
    """The explicit decision that finalized an invoice while its period's usage was INCOMPLETE: who,
    why, when, and the completeness figure at that moment."""

    __tablename__ = "invoice_completeness_override"

    invoice_id: str = Field(primary_key=True, foreign_key="invoice.id", ondelete="CASCADE")
    decided_by: str
    reason: str
    decided_at: datetime = timestamp_column()
    completeness: float = 1.0
    completeness_note: str = ""


class InvoiceLine(SQLModel, table=True):
    __tablename__ = "invoice_line"

    id: int | None = Field(default=None, primary_key=True)
    invoice_id: str = Field(foreign_key="invoice.id", index=True, ondelete="CASCADE")
    position: int = 0
    subscription_id: str = ""
    api_id: str = ""
    plan_id: str = ""
    # The plan version the line was priced with (0: before versions were recorded).
    plan_version: int = 0
    kind: str  # billing/pricing.py line kinds
    description: str = ""
    quantity: str = "0"
    unit_price: str = "0"
    amount: str = "0"
    # The billed segment an ADJUSTMENT line corrects.
    adjusts_segment_id: int | None = None
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class BilledSegment(SQLModel, table=True):
    """What an invoice priced for one subscription under one plan in one period: the counts, the plan's
    pricing as it was, the charged amount. Late usage is found by comparing it with the usage table."""

    __tablename__ = "billed_segment"

    id: int | None = Field(default=None, primary_key=True)
    invoice_id: str = Field(foreign_key="invoice.id", index=True, ondelete="CASCADE")
    subscription_id: str = Field(index=True)
    api_id: str = ""
    plan_id: str = ""
    period_start: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    period_end: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    share: str = "1"  # the fee's share of the period, "num/den"
    # The plan version it was priced with (0: before versions were recorded).
    plan_version: int = 0
    # The stretch of the period whose usage it priced (billing/regimes.py); NULL: the whole period.
    usage_start: datetime | None = timestamp_column(nullable=True)
    usage_end: datetime | None = timestamp_column(nullable=True)
    # Set when the segment was inside a free trial (nothing charged), to when the trial ended.
    trial_until: datetime | None = timestamp_column(nullable=True)
    pricing: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # Counts and charged amount billed so far: the invoice's, plus finalized adjustments.
    usage: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    amount: str = "0"


class CreditNote(SQLModel, table=True):
    """A correction of a finalized invoice: numbered in its own gapless sequence ("CN-000001"), never
    changed once issued (billing/credit_notes.py)."""

    __tablename__ = "credit_note"

    id: str = Field(primary_key=True)
    number: str = Field(unique=True)
    invoice_id: str = Field(foreign_key="invoice.id", index=True)
    application_id: str = ""
    currency: str
    total: str = "0"
    reason: str = ""
    created_at: datetime = timestamp_column()
    # The credited lines' sum and the taxes on them (billing/tax.py), as InvoiceTax rows are: a list of
    # {tax_rate_id, name, rate, inclusive, taxable, amount}. `total` = subtotal + exclusive taxes.
    subtotal: str = "0"
    tax_total: str = "0"
    taxes: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class CreditNoteLine(SQLModel, table=True):
    """What a credit note credits on one line of its invoice."""

    __tablename__ = "credit_note_line"

    id: int | None = Field(default=None, primary_key=True)
    credit_note_id: str = Field(foreign_key="credit_note.id", index=True)
    position: int = 0
    # The credited invoice line (its position on the invoice) and what it was about.
    invoice_line: int = 0
    subscription_id: str = ""
    plan_id: str = ""
    plan_version: int = 0
    kind: str = ""
    description: str = ""
    amount: str = "0"


# --- billing accounts and taxes (issue 13, customer-ready invoices) ------------------------------------


class BillingAccount(SQLModel, table=True):
    """The customer an invoice is addressed to; applications point to it (Application.billing_account_id)."""

    __tablename__ = "billing_account"

    id: str = Field(primary_key=True)  # "acct_..."
    name: str
    email: str = ""
    address: str = ""
    tax_id: str = ""
    created_at: datetime = timestamp_column()
    updated_at: datetime = timestamp_column()


class TaxRate(SQLModel, table=True):
    """A tax applied to invoice lines: set on a billing account or on a plan (billing/tax.py says which
    applies to a line). `rate` is a percentage, canonical decimal text ("20", "8.875")."""

    __tablename__ = "tax_rate"

    id: str = Field(primary_key=True)  # "tax_..."
    billing_account_id: str = Field(default="", index=True)
    plan_id: str = Field(default="", index=True)
    name: str
    rate: str
    inclusive: bool = False
    created_at: datetime = timestamp_column()


class InvoiceTax(SQLModel, table=True):
    """One tax line of an invoice: a rate, the net amount it was applied to, the tax (the sum of the
    per-line rounded taxes)."""

    __tablename__ = "invoice_tax"

    id: int | None = Field(default=None, primary_key=True)
    invoice_id: str = Field(foreign_key="invoice.id", index=True, ondelete="CASCADE")
    position: int = 0
    tax_rate_id: str = ""
    name: str = ""
    rate: str = "0"
    inclusive: bool = False
    taxable: str = "0"
    amount: str = "0"


class BillingSequence(SQLModel, table=True):
    """Gapless invoice numbers: the counter row is incremented in the finalizing transaction."""

    __tablename__ = "billing_sequence"

    name: str = Field(primary_key=True)
    value: int = 0


class BillingIdempotency(SQLModel, table=True):
    """Idempotency keys of billing writes, committed in the same transaction as the data they protect."""

    __tablename__ = "billing_idempotency"

    key: str = Field(primary_key=True)
    operation: str
    result: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = timestamp_column()


# --- events and webhooks (issue 13) -------------------------------------------------------------------


class EventOutbox(SQLModel, table=True):
    """Something that happened, written by `tollway.events.emit_event` in the same transaction as the
    change it reports, so an event exists exactly when its change committed. `sequence` follows commit
    order (every writer of events holds the change-revision lock until commit): StreamEvents replays by
    it. `fanned_out` is set once the webhook deliverer made this event's delivery rows."""

    __tablename__ = "event_outbox"
    __table_args__ = (
        Index("ix_event_outbox_pending_fanout", "sequence", postgresql_where=text("NOT fanned_out"),
              sqlite_where=text("NOT fanned_out")),
        {"sqlite_autoincrement": True},
    )  # fmt: skip

    sequence: int | None = Field(
        default=None,
        sa_column=Column(
            BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
    )
    id: str = Field(unique=True)  # "evt_...": the receivers' idempotency key
    type: str = Field(index=True)  # tollway.vocabulary.EventType
    created_at: datetime = timestamp_column()
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    fanned_out: bool = False


class WebhookEndpoint(SQLModel, table=True):
    """An HTTP(S) URL that receives events of the chosen types, signed with its own secret. The secret
    is stored encrypted (billing/webhook_secrets.py): signing needs the secret itself, not a hash."""

    __tablename__ = "webhook_endpoint"

    id: str = Field(primary_key=True)
    url: str
    description: str = ""
    # Event types it receives; empty = every type.
    event_types: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    secret_encrypted: str
    # It receives the events after this outbox sequence (the last one when it was created).
    from_sequence: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    state: str = "ENABLED"  # ENABLED | DISABLED
    created_at: datetime = timestamp_column()
    disabled_at: datetime | None = timestamp_column(nullable=True)


class WebhookDelivery(SQLModel, table=True):
    """One event to one endpoint: PENDING until a 2xx answer (DELIVERED) or the last attempt (FAILED).
    A deliverer claims due rows by setting `lease_owner`/`lease_until` (PostgreSQL: the rows are picked
    with FOR UPDATE SKIP LOCKED), so one replica at a time attempts a delivery; a lease that ends
    without a result (the replica died) makes the row claimable again."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        Index("uq_webhook_delivery_event_endpoint", "event_sequence", "endpoint_id", unique=True),
        Index("ix_webhook_delivery_due", "state", "next_attempt_at"),
    )

    id: str = Field(primary_key=True)
    endpoint_id: str = Field(foreign_key="webhook_endpoint.id", index=True, ondelete="CASCADE")
    event_sequence: int = Field(sa_column=Column(BigInteger, nullable=False))
    event_id: str = Field(index=True)
    event_type: str = ""
    state: str = "PENDING"  # PENDING | DELIVERED | FAILED
    attempts: int = 0
    next_attempt_at: datetime = timestamp_column()
    lease_owner: str = ""
    lease_until: datetime | None = timestamp_column(nullable=True)
    last_status_code: int = 0
    last_error: str = ""
    created_at: datetime = timestamp_column()
    updated_at: datetime = timestamp_column()
    delivered_at: datetime | None = timestamp_column(nullable=True)


class WebhookAttempt(SQLModel, table=True):
    """The delivery log: one row per HTTP attempt (status code or error, a bounded response prefix)."""

    __tablename__ = "webhook_attempt"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: str = Field(foreign_key="webhook_delivery.id", index=True, ondelete="CASCADE")
    attempt: int
    started_at: datetime = timestamp_column()
    duration_ms: int = 0
    status_code: int = 0  # 0: no HTTP answer (see error)
    error: str = ""
    response_prefix: str = ""


# --- billing/ (issue 13): prepaid credit, spend caps, alerts, gateway gates -----------------------------


class CreditAccount(SQLModel, table=True):
    """An application's prepaid credit in one currency. `balance_minor` (minor units, exact) is the sum
    of its ledger entries, kept by atomic `balance_minor = balance_minor + x` updates in the ledger
    entry's transaction (billing/credit_store.py)."""

    __tablename__ = "credit_account"

    application_id: str = Field(primary_key=True)
    currency: str = Field(primary_key=True)
    balance_minor: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    # The balance right after the newest top-up, and which top-up that was: credit alerts are relative
    # to it and re-arm with every top-up.
    funded_minor: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    funding_epoch: int = 0
    updated_at: datetime = timestamp_column()


class CreditEntry(SQLModel, table=True):
    """The append-only ledger: a top-up (positive) or a burn of priced usage (negative, or positive for
    a correction). `key` is unique: a top-up's request id, or a burn's (subscription, period, counted
    total), so a retried top-up or a replayed burn writes nothing."""

    __tablename__ = "credit_entry"
    __table_args__ = (Index("ix_credit_entry_account", "application_id", "currency", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True)
    application_id: str
    currency: str
    kind: str  # TOP_UP | BURN
    amount_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    balance_after_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    subscription_id: str = ""
    period_start: datetime | None = timestamp_column(nullable=True)
    # BURN: the billable requests of the period counted so far (after this burn).
    requests: int = 0
    note: str = ""
    created_at: datetime = timestamp_column()


class CreditBurnMark(SQLModel, table=True):
    """What has been burned for one subscription's billing period: the billable requests and the usage
    charge (minor units) already taken from credit. A burn moves it from the stored values to the newly
    counted ones with a compare-and-set, so the same counts never burn twice."""

    __tablename__ = "credit_burn_mark"

    subscription_id: str = Field(primary_key=True)
    # The plan the usage was admitted under (a plan change mid-period burns each part at its plan's prices).
    plan_id: str = Field(primary_key=True)
    period_start: datetime = Field(sa_column=Column(DateTime(timezone=True), primary_key=True))
    application_id: str = ""
    currency: str = ""
    requests: int = 0
    burned_minor: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))


class SpendCap(SQLModel, table=True):
    """A cap on a subscription's or an application's billing-period charge (CHARGE, in `currency`) or
    billable requests (REQUESTS). Reaching it refuses at the gateway (402 spend_cap_reached)."""

    __tablename__ = "spend_cap"

    scope: str = Field(primary_key=True)  # APPLICATION | SUBSCRIPTION
    target_id: str = Field(primary_key=True)
    kind: str = Field(primary_key=True)  # CHARGE | REQUESTS
    limit: str  # decimal text: an amount (CHARGE) or a whole number of requests (REQUESTS)
    currency: str = ""
    updated_at: datetime = timestamp_column()
    # Used so far this period (amount or requests), as the last metering round measured it; "" before.
    spent: str = ""


class BillingGate(SQLModel, table=True):
    """What billing tells the gateway, followed by keymgr through the change log: an application's
    credit standing in a currency (`refused`: no credit left), or a spend cap reached. Written only when
    the standing flips, so Check never reads the database and the log carries only the flips."""

    __tablename__ = "billing_gate"

    # "credit:<application>:<currency>" | "cap:<scope>:<target>"
    id: str = Field(primary_key=True)
    reason: str  # credit_exhausted | spend_cap_reached
    scope: str  # APPLICATION | SUBSCRIPTION
    target_id: str
    currency: str = ""
    refused: bool = False
    detail: str = ""
    updated_at: datetime = timestamp_column()


class Alert(SQLModel, table=True):
    """A threshold crossed: raised once per scope, period, kind and threshold (billing/alerts.py)."""

    __tablename__ = "billing_alert"
    __table_args__ = (
        Index("uq_billing_alert_once", "scope", "target_id", "period", "kind", "threshold", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    scope: str  # APPLICATION | SUBSCRIPTION
    target_id: str = Field(index=True)
    # The billing period's start (ISO), or "credit-<n>" for the n-th funding of a credit account.
    period: str
    kind: str  # QUOTA | CAP_CHARGE | CAP_REQUESTS | CREDIT
    threshold: int  # percent
    value: str = ""  # what was measured ("812 of 1,000 requests", "8.00 of 10.00 USD")
    raised_at: datetime = timestamp_column()
