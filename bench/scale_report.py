"""The replica-scale benchmark's report (bench/scale.py): the table it prints and the figures it
derives, from the runs' measurements alone."""

from __future__ import annotations

import math
from typing import Any

# The kinds of change whose visibility on the replicas is measured.
KINDS = ("new_key", "revocation", "block", "plan_change")


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def table(runs: list[dict[str, Any]]) -> str:
    """One table: a row per measure, a column per N."""
    rows: list[tuple[str, list[str]]] = []
    rows.append(("seed (COPY), s", [f"{r['seed_s']:.1f}" for r in runs]))
    for name in ("A", "B"):
        rows.append(
            (
                f"cold load {name}: first allowed Check, s",
                [f"{r['replicas'][name]['ready_s']:.1f}" for r in runs],
            )
        )
        rows.append(
            (
                f"cold load {name}: health SERVING, s",
                [
                    "-"
                    if r["replicas"][name]["health_serving_s"] is None
                    else f"{r['replicas'][name]['health_serving_s']:.1f}"
                    for r in runs
                ],
            )
        )
        rows.append(
            (
                f"RSS {name} after load / peak, MB",
                [
                    f"{r['replicas'][name]['rss_mb']:.0f} / {r['replicas'][name]['peak_rss_mb']:.0f}"
                    for r in runs
                ],
            )
        )
    for kind in KINDS:
        rows.append(
            (
                f"{kind} visible on B p50 / p99, ms",
                [
                    f"{_ms(r['visible'][kind]['p50_ms'])} / {_ms(r['visible'][kind]['p99_ms'])}"
                    + (
                        f" ({r['visible'][kind]['timeouts']} timed out)"
                        if r["visible"][kind]["timeouts"]
                        else ""
                    )
                    for r in runs
                ],
            )
        )
    for phase, label in (("check_at_rest", "at rest"), ("check_during_changes", "during changes")):
        rows.append(
            (
                f"Check {label} p50 / p99 / max, ms",
                [
                    f"{_ms(r[phase]['p50_ms'])} / {_ms(r[phase]['p99_ms'])} / {_ms(r[phase]['max_ms'])}"
                    for r in runs
                ],
            )
        )
    rows.append(
        ("changes committed through A, per s", [f"{r['change_stream']['committed_per_s']:.0f}" for r in runs])
    )
    header = ["measure", *(f"N = {r['keys']:,}" for r in runs)]
    widths = [max(len(header[0]), *(len(label) for label, _ in rows))]
    widths += [max(len(header[i + 1]), *(len(values[i]) for _, values in rows)) for i in range(len(runs))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)) + " |"

    out = [line(header), "|" + "|".join("-" * (width + 2) for width in widths) + "|"]
    out += [line([label, *values]) for label, values in rows]
    return "\n".join(out)


def work_per_change(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Change-to-visible p50 at each N, and its ratio to the smallest N's: ~1 when the work per change
    follows the rows it touched, ~N/N0 when it follows the number of keys."""
    base = runs[0]
    comparison: dict[str, Any] = {"keys": [r["keys"] for r in runs]}
    for kind in KINDS:
        p50s = [r["visible"][kind]["p50_ms"] for r in runs]
        comparison[kind] = {"p50_ms": p50s, "ratio": [p / p50s[0] if p50s[0] else math.nan for p in p50s]}
    comparison["keys_ratio"] = [r["keys"] / base["keys"] for r in runs]
    return comparison


def finite(value: Any) -> Any:
    """NaN (no samples) as null, so the file is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite(item) for item in value]
    return value
