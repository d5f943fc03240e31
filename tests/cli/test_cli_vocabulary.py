"""One CLI vocabulary: every command of the real `tollway` app walked through its parser. The same thing has
the same option name everywhere, earlier spellings still parse without being shown, every admin command
offers `--output json|table`, and the two views carry the same fields."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from throttle.cli import quota_view
from tollway.app.cli import app
from tollway.billing.v1 import billing_pb2
from tollway.catalog.v1 import catalog_pb2 as cat
from tollway.cli_output import OutputFormat, data_fields, emit, message_data, render_table, table_fields
from tollway.cli_support import canonical_args
from tollway.throttle.v1 import throttle_pb2

# The names the vocabulary fixes, and spellings that would drift from them.
SHARED = {"subscription", "application", "api", "plan", "month", "start", "end"}
DRIFT = {
    "--sub", "--app", "--subscription-id", "--sub-id", "--application-id", "--app-id", "--api-id",
    "--plan-id", "--from", "--to", "--since", "--until", "--period",
}  # fmt: skip
# Commands whose output is not an answer to print as json or table.
NO_OUTPUT = {"billing export"}  # writes CSV or JSON lines (--format), to --file or stdout


def commands(group: Any = None, path: str = "") -> Iterator[tuple[str, Any]]:
    group = group or typer.main.get_command(app)
    for name, command in group.commands.items():
        full = f"{path} {name}".strip()
        if hasattr(command, "commands"):
            yield from commands(command, full)
        else:
            yield full, command


def options(command: Any) -> dict[str, Any]:
    """Visible option name -> parameter."""
    found = {}
    for param in command.params:
        if getattr(param, "hidden", False) or param.param_type_name != "option":
            continue
        for opt in [*param.opts, *getattr(param, "secondary_opts", [])]:
            found[opt] = param
    return found


ALL = dict(commands())
ADMIN = {name: command for name, command in ALL.items() if "--addr" in options(command)}


def test_the_walk_finds_every_component_s_commands() -> None:
    groups = {name.split()[0] for name in ADMIN}
    assert {
        "plan",
        "api",
        "app",
        "sub",
        "key",
        "block",
        "quota",
        "limits",
        "usage",
        "billing",
        "portal",
    } <= groups
    assert len(ADMIN) > 50


@pytest.mark.parametrize("name", sorted(ALL))
def test_no_command_shows_a_drifting_name(name: str) -> None:
    shown = set(options(ALL[name]))
    assert not shown & DRIFT, f"{name}: {sorted(shown & DRIFT)}"
    for opt, param in options(ALL[name]).items():
        # An option about a subscription, application, API, plan or period is named exactly so.
        if param.name in SHARED:
            assert opt == f"--{param.name}", f"{name}: {opt} for {param.name}"
    if "--start" in shown or "--end" in shown:
        assert {"--start", "--end"} <= shown, name


@pytest.mark.parametrize("name", sorted(ADMIN))
def test_every_admin_command_has_the_connection_and_output_options(name: str) -> None:
    shown = options(ADMIN[name])
    assert {"--addr", "--token"} <= set(shown), name
    if name in NO_OUTPUT:
        assert "--output" not in shown
        return
    assert "--output" in shown, name


def test_an_unknown_output_format_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["quota", "sub_1", "--output", "yaml", "--token", "t"])
    assert result.exit_code == 2
    assert "yaml" in result.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["billing", "generate", "--sub", "s1", "--app=a1"],
            ["billing", "generate", "--subscription", "s1", "--application=a1"],
        ),
        (
            ["billing", "export", "--month", "2026-11", "--output", "x.csv"],
            ["billing", "export", "--month", "2026-11", "--file", "x.csv"],
        ),
        (["billing", "list", "--output", "table"], ["billing", "list", "--output", "table"]),
        (["quota", "--", "--sub"], ["quota", "--", "--sub"]),
    ],
)
def test_earlier_spellings_are_rewritten(args: list[str], expected: list[str]) -> None:
    assert canonical_args(args) == expected


@pytest.mark.parametrize(
    "args",
    [
        ["billing", "generate", "--sub", "s1", "--app", "a1", "--help"],
        ["billing", "reconcile", "--sub", "s1", "--app", "a1", "--help"],
        ["billing", "list", "--app", "a1", "--help"],
        ["billing", "export", "--month", "2026-11", "--output", "x.csv", "--help"],
    ],
)
def test_hidden_aliases_still_parse_and_are_not_shown(args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "--sub " not in result.output and "--app " not in result.output


def test_change_plan_takes_plan_as_the_shared_option() -> None:
    assert "--plan" in options(ALL["billing change-plan"])
    result = CliRunner().invoke(
        app, ["billing", "change-plan", "sub_1", "gold", "--plan", "gold", "--token", "t"]
    )
    assert result.exit_code == 2 and "once" in result.output


# --------------------------------------------------------------------------------------------------
# Output: the same fields in both views
# --------------------------------------------------------------------------------------------------

PLANS = cat.ListPlansResponse(
    plans=[
        cat.Plan(id="plan_1", name="gold", limits=cat.PlanLimits(monthly_quota=10**5)),
        cat.Plan(
            id="plan_2", name="free", description="two\nlines",
            pricing=cat.PlanPricing(currency="EUR", tiers=[cat.PriceTier(up_to=10, unit_price="0.1")]),
        ),
    ]
)  # fmt: skip
QUOTA = throttle_pb2.GetSubscriptionQuotaResponse(
    subscription_id="sub_1",
    plan_id="plan_1",
    windows=[
        throttle_pb2.QuotaWindow(window=throttle_pb2.WINDOW_MINUTE, limit=5, used=2, remaining=3),
        throttle_pb2.QuotaWindow(window=throttle_pb2.WINDOW_BILLING_PERIOD, used=7),
    ],
)
INVOICE = billing_pb2.GetInvoiceResponse(
    invoice=billing_pb2.Invoice(id="inv_1", number="INV-000001", currency="EUR", total="12.00")
)


@pytest.mark.parametrize(
    "message", [PLANS, QUOTA, INVOICE, cat.ListPlansResponse()], ids=lambda m: type(m).__name__
)
def test_table_and_json_carry_the_same_fields(message: Any, capsys: pytest.CaptureFixture[str]) -> None:
    emit(message, output=OutputFormat.json)
    data = json.loads(capsys.readouterr().out)
    emit(message, output=OutputFormat.table)
    table = capsys.readouterr().out
    assert data == message_data(message)
    assert table_fields(table) == data_fields(data), table


def test_counts_are_numbers_and_an_unlimited_window_says_so() -> None:
    data = quota_view(message_data(QUOTA))
    minute, period = data["windows"]
    assert (minute["limit"], minute["used"], minute["remaining"]) == (5, 2, 3)
    assert (period["limit"], period["used"], period["remaining"]) == ("unlimited", 7, "unlimited")
    table = render_table(data)
    assert "unlimited" in table and "WINDOW_BILLING_PERIOD" in table
    assert message_data(PLANS)["plans"][0]["limits"]["monthly_quota"] == 10**5


def test_piped_output_is_json_by_default() -> None:
    # CliRunner's stdout is not a terminal: JSON, as for a script.
    result = CliRunner().invoke(app, ["quota", "--help"])
    assert "--output" in result.output
