"""Log lines: JSON objects with time, level, component, message and request id; levels per component;
the process's secrets and anything shaped like an API key redacted from every line, text or JSON."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keymgr.keys import display, new_key
from tollway.logs import (
    API_KEY_PATTERN,
    LOG_COMPONENTS,
    REDACTED,
    REQUEST_ID,
    JsonFormatter,
    Redactor,
    TextFormatter,
    configure_logging,
)
from tollway.settings import Settings

ADMIN_TOKEN = "admin-token-0123456789abcdef"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The root logger as configure_logging leaves it, writing into a buffer; restored afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    levels = {name: logging.getLogger(name).level for name in LOG_COMPONENTS}
    buffer = io.StringIO()
    yield buffer
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def _configure(buffer: io.StringIO, **settings: object) -> None:
    configure_logging(Settings(admin_token=ADMIN_TOKEN, **settings))  # type: ignore[arg-type]
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)


def lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_json_lines_carry_time_level_component_message_and_request_id(captured: io.StringIO) -> None:
    _configure(captured, log_format="json")
    logging.getLogger("keymgr.servicer").warning("refused: %s", "key_invalid")

    async def serve_one() -> None:
        REQUEST_ID.set("req-42")
        logging.getLogger("keymgr.servicer").warning("inside a request\nwith a second line")

    asyncio.run(serve_one())
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("usage.ingest").exception("failed")
    first, second, third = lines(captured)
    assert (
        first["level"] == "warning"
        and first["component"] == "keymgr"
        and first["logger"] == "keymgr.servicer"
    )
    assert first["message"] == "refused: key_invalid" and "request_id" not in first
    assert str(first["time"]).endswith("Z")
    assert second["request_id"] == "req-42" and second["message"] == "inside a request\nwith a second line"
    assert third["component"] == "usage" and "ValueError: boom" in str(third["exception"])


def test_levels_per_component(captured: io.StringIO) -> None:
    _configure(
        captured,
        log_format="json",
        log_level="INFO",
        log_levels=(("throttle", "DEBUG"), ("usage", "WARNING")),
    )
    logging.getLogger("throttle.counters").debug("shown")
    logging.getLogger("usage.ingest").info("hidden")
    logging.getLogger("keymgr.index").debug("hidden")
    logging.getLogger("keymgr.index").info("shown too")
    assert [line["message"] for line in lines(captured)] == ["shown", "shown too"]


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_secrets_and_keys_never_reach_a_line(captured: io.StringIO, log_format: str) -> None:
    _configure(captured, log_format=log_format, key_hash_secret="hash-secret-0123456789")
    key = new_key().full_key
    log = logging.getLogger("tollway.test")
    log.warning("token %s and secret %s", ADMIN_TOKEN, "hash-secret-0123456789")
    log.warning("a key in a message: %s", key)
    try:
        raise RuntimeError(f"a key in an exception {key}")
    except RuntimeError:
        log.exception("failed")
    text = captured.getvalue()
    for secret in (ADMIN_TOKEN, "hash-secret-0123456789", key):
        assert secret not in text
    assert text.count(REDACTED) == 4
    shown = display("abcdefghijkl")
    assert Redactor()(shown) == shown  # the shown form (tw_<id>_…) is no secret: left alone


@given(st.integers(min_value=0, max_value=10_000))
def test_the_pattern_matches_every_key_keymgr_issues(_: int) -> None:
    key = new_key().full_key
    assert API_KEY_PATTERN.fullmatch(key)
    assert Redactor()(f"x {key} y") == f"x {REDACTED} y"


def test_text_lines_keep_their_format_with_the_request_id() -> None:
    record = logging.LogRecord("throttle.servicer", logging.INFO, __file__, 1, "decided %s", ("ok",), None)
    line = TextFormatter(Redactor(), worker=2).format(record)
    assert " INFO worker 2 throttle.servicer: decided ok" in line
    token = REQUEST_ID.set("abc")
    try:
        assert JsonFormatter(Redactor(), worker=2).format(record).count('"request_id": "abc"') == 1
    finally:
        REQUEST_ID.reset(token)


def test_an_admin_call_s_request_id_comes_from_its_metadata() -> None:
    from tollway.deadlines import caller_request_id

    assert caller_request_id((("authorization", "Bearer x"), ("x-request-id", "ops-7"))) == "ops-7"
    assert caller_request_id((("x-request-id", "bad id\n"),)) == ""
    assert caller_request_id((("x-request-id", "x" * 129),)) == ""
    assert caller_request_id(None) == ""
