"""Keys are secrets: after issuing, rotating, using, misusing and revoking keys through the gateway, no
full key and no secret part is in the database files or in any log line (Tollway's or Envoy's)."""

from __future__ import annotations

import pytest

from tests.e2e.harness import Stack
from tollway.store.v1 import store_pb2

pytestmark = pytest.mark.e2e


def test_no_key_in_database_or_logs(stack: Stack) -> None:
    plan = stack.create_plan("secret-plan")
    api = stack.create_api("secret-api", "/secret/v1", [plan.id])
    app = stack.create_application("secret-app")
    stack.subscribe(app.id, api.id, plan.id)
    first = stack.issue_key(app.id)
    rotated = stack.call(stack.store.RotateApiKey, store_pb2.RotateApiKeyRequest(key_id=first.api_key.key_id))
    keys = [first.key, rotated.key]
    stack.wait_for_status("/secret/v1/x", 200, {"x-api-key": rotated.key})
    for key in keys:
        stack.get("/secret/v1/x", {"x-api-key": key})
        stack.get("/secret/v1/x", {"authorization": f"Bearer {key}"})
        stack.get("/secret/v1/x", {"x-api-key": key[:-1] + ("a" if key[-1] != "a" else "b")})
    stack.call(stack.store.RevokeApiKey, store_pb2.RevokeApiKeyRequest(key_id=rotated.api_key.key_id))
    stack.wait_for_status("/secret/v1/x", 401, {"x-api-key": rotated.key})

    listed = stack.call(stack.store.ListApiKeys, store_pb2.ListApiKeysRequest(application_id=app.id))
    secrets = keys + [key.rsplit("_", 1)[1] for key in keys]
    assert not any(secret in str(listed) for secret in secrets)

    stored = b"".join(p.read_bytes() for p in stack.settings.data_dir.glob("tollway.db*"))
    assert stored, "the SQLite database files were not found"
    for secret in secrets:
        assert secret.encode() not in stored
    assert stack.logs.lines, "no log lines were captured"
    log_text = "\n".join(stack.logs.lines) + stack.envoy.log_path.read_text()
    for secret in secrets:
        assert secret not in log_text
