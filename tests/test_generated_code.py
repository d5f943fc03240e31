"""The checked-in protobuf code must be what `make protos` produces from protos/ today."""

from __future__ import annotations

from pathlib import Path

from tollway.protogen import generate

REPO = Path(__file__).resolve().parent.parent


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    generate(tmp_path)
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert fresh, "protoc produced nothing"
    stale = [str(rel) for rel, content in fresh.items() if (REPO / rel).read_bytes() != content]
    assert not stale, f"generated code is stale, run `make protos`: {stale}"
    # No generated module is left behind for a proto that no longer exists.
    checked_in = {
        p.relative_to(REPO)
        for pattern in ("*_pb2.py", "*_pb2.pyi", "*_pb2_grpc.py")
        for p in (REPO / "tollway").rglob(pattern)
    }
    assert checked_in == set(fresh), "generated files without a proto: " + str(checked_in - set(fresh))
