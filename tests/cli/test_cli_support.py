"""The shared CLI helpers that need no server: value parsers, the typer adapter, gRPC error wording, token
resolution, the client environment and JSON output."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated

import grpc
import pytest
import typer
from typer.testing import CliRunner

from billing.cli import month_bounds, parse_month
from tollway.catalog.v1 import catalog_pb2 as cat
from tollway.cli_support import (
    DEFAULT_ADMIN_ADDR,
    AdminAddr,
    AdminToken,
    ClientEnvironment,
    ResolvedToken,
    admin_channel,
    describe_rpc_error,
    emit,
    parse_time,
    resolve_token,
    time_param,
    timestamp_proto,
    typer_parser,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-01T08:30:00Z", datetime(2026, 11, 1, 8, 30, tzinfo=UTC)),
        (" 2026-11-01T08:30:00 ", datetime(2026, 11, 1, 8, 30, tzinfo=UTC)),  # naive is UTC
        ("2026-11-01T10:30:00+02:00", datetime(2026, 11, 1, 8, 30, tzinfo=UTC)),
    ],
)
def test_parse_time_is_utc(text: str, expected: datetime) -> None:
    parsed = parse_time(text)
    assert parsed == expected
    assert parsed.tzinfo == UTC


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01", "01/11/2026"])
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"invalid time .*ISO 8601"):
        parse_time(text)


def test_timestamp_proto_keeps_the_instant() -> None:
    instant = datetime(2026, 11, 1, 10, 30, tzinfo=timezone(timedelta(hours=2)))
    assert timestamp_proto(instant).ToJsonString() == "2026-11-01T08:30:00Z"


def test_month_bounds_cover_the_month_and_roll_over_the_year() -> None:
    first, after = month_bounds(parse_month("2026-12"))
    assert (first.ToJsonString(), after.ToJsonString()) == ("2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z")
    with pytest.raises(ValueError, match="use YYYY-MM"):
        parse_month("2026-11-05")


def test_typer_parser_turns_value_errors_into_usage_errors() -> None:
    parser = typer_parser(parse_time)
    with pytest.raises(typer.BadParameter, match="invalid time 'soon'"):
        parser("soon")
    already = datetime(2026, 1, 1, tzinfo=UTC)
    assert parser(already) is already  # type: ignore[arg-type]  # typer passes converted values again


def test_a_bad_value_exits_with_2_and_the_parsers_message() -> None:
    app = typer.Typer()

    @app.command()
    def show(at: Annotated[datetime | None, typer.Option("--at", parser=time_param)] = None) -> None:
        typer.echo(at.isoformat() if at else "none")

    runner = CliRunner()
    assert runner.invoke(app, ["--at", "2026-11-01Z"]).stdout.strip() == "2026-11-01T00:00:00+00:00"
    result = runner.invoke(app, ["--at", "yesterday"])
    assert result.exit_code == 2
    assert "invalid time 'yesterday'" in result.output


def test_connection_options_read_the_environment_and_hide_the_token() -> None:
    app = typer.Typer()

    @app.command()
    def where(addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None) -> None:
        typer.echo(f"{addr} {token}")

    runner = CliRunner()
    assert (
        runner.invoke(app, [], env={"TOLLWAY_ADMIN_ADDR": None}).stdout.strip()
        == f"{DEFAULT_ADMIN_ADDR} None"
    )
    env = {"TOLLWAY_ADMIN_ADDR": "10.0.0.1:1", "TOLLWAY_ADMIN_TOKEN": "t0k"}
    assert runner.invoke(app, [], env=env).stdout.strip() == "10.0.0.1:1 t0k"
    assert runner.invoke(app, ["--addr", "h:2", "--token", "x"], env=env).stdout.strip() == "h:2 x"
    assert "t0k" not in runner.invoke(app, ["--help"], env=env).output


@pytest.mark.parametrize(
    ("code", "details", "connected", "expected"),
    [
        (grpc.StatusCode.NOT_FOUND, "plan 'x' not found", True, "NOT_FOUND: plan 'x' not found"),
        (grpc.StatusCode.UNAUTHENTICATED, "", True, "UNAUTHENTICATED"),
        # UNAVAILABLE from a running server is the server's answer, not a connection failure.
        (grpc.StatusCode.UNAVAILABLE, "billing is draining", True, "UNAVAILABLE: billing is draining"),
        (
            grpc.StatusCode.UNAVAILABLE,
            "failed to connect to all addresses",
            False,
            "cannot reach the admin server at h:1: UNAVAILABLE: failed to connect to all addresses",
        ),
        (
            grpc.StatusCode.DEADLINE_EXCEEDED,
            "Deadline Exceeded",
            False,
            "cannot reach the admin server at h:1: DEADLINE_EXCEEDED: Deadline Exceeded",
        ),
        (
            grpc.StatusCode.DEADLINE_EXCEEDED,
            "Deadline Exceeded",
            True,
            "DEADLINE_EXCEEDED: Deadline Exceeded",
        ),
    ],
)
def test_describe_rpc_error(code: grpc.StatusCode, details: str, connected: bool, expected: str) -> None:
    assert describe_rpc_error(code, details, "h:1", lambda: connected) == expected


def test_resolve_token_prefers_the_given_one_then_the_data_dir_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chosen = ClientEnvironment(data_dir=tmp_path, data_dir_chosen=True)
    assert resolve_token(" given \n", chosen) == ResolvedToken("given", "--token")
    from_env = ClientEnvironment(data_dir=tmp_path, env_token="given")
    assert resolve_token("given", from_env).source == "TOLLWAY_ADMIN_TOKEN"
    (tmp_path / "admin-token").write_text("stored\n")
    assert resolve_token(None, chosen) == ResolvedToken(
        "stored", f"{tmp_path / 'admin-token'} (TOLLWAY_DATA_DIR)"
    )
    assert resolve_token("", chosen).token == "stored"
    assert capsys.readouterr().err == ""  # a chosen data dir is read without a note
    with pytest.raises(typer.Exit) as missing:
        resolve_token(None, ClientEnvironment(data_dir=tmp_path / "absent", data_dir_chosen=True))
    assert missing.value.exit_code == 2
    assert "no admin token: pass --token or set TOLLWAY_ADMIN_TOKEN" in capsys.readouterr().err


def test_the_default_data_dir_is_never_read_silently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # TOLLWAY_DATA_DIR unset: `.tollway` in the current directory, maybe left by another server's run.
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".tollway").mkdir()
    (tmp_path / ".tollway" / "admin-token").write_text("stale\n")
    resolved = resolve_token(None, ClientEnvironment.from_environ({}))
    assert resolved.token == "stale"
    note = capsys.readouterr().err
    assert f"note: using the admin token in {tmp_path / '.tollway' / 'admin-token'}" in note
    assert "stale" not in note


def test_client_environment_from_environ() -> None:
    assert ClientEnvironment.from_environ({}) == ClientEnvironment()
    environment = ClientEnvironment.from_environ(
        {
            "TOLLWAY_DATA_DIR": "/var/lib/tollway",
            "TOLLWAY_ADMIN_TLS_CA": "ca.pem",
            "TOLLWAY_ADMIN_TLS_CLIENT_CERT": "client.pem",
            "TOLLWAY_ADMIN_TLS_CLIENT_KEY": "client.key",
        }
    )
    assert environment == ClientEnvironment(
        Path("/var/lib/tollway"), "ca.pem", "client.pem", "client.key", data_dir_chosen=True
    )


def test_admin_channel_without_a_ca_is_plaintext(tmp_path: Path) -> None:
    # No file is read without a CA; with one, a missing file fails loudly instead of falling back.
    channel = admin_channel("127.0.0.1:1", ClientEnvironment())
    channel.close()
    with pytest.raises(FileNotFoundError):
        admin_channel("127.0.0.1:1", ClientEnvironment(tls_ca=str(tmp_path / "missing.pem")))


def test_emit_prints_proto_field_names_numbers_and_no_empty_fields(
    capsys: pytest.CaptureFixture[str],
) -> None:
    emit(cat.ListPlansResponse())
    assert json.loads(capsys.readouterr().out) == {"plans": []}  # an answer's list, even empty
    emit(cat.PriceTier(up_to=0, unit_price="0.5"))
    assert json.loads(capsys.readouterr().out) == {"unit_price": "0.5"}
    emit(cat.PriceTier(up_to=10000, unit_price="0.5"))
    assert json.loads(capsys.readouterr().out) == {"up_to": 10000, "unit_price": "0.5"}
