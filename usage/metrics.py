"""Usage metrics in the Prometheus text format, rendered at scrape time from the ingestor's counters.

tollway_usage_entries_received_total            entries that reached the WAL (durably received)
tollway_usage_messages_received_total           StreamAccessLogsMessages that reached the WAL
tollway_usage_node_entries_received_total{node} the same entries, per Envoy node
tollway_usage_entries_counted_total             records committed to the summaries
tollway_usage_entries_duplicate_total           records the dedupe state refused (replays, repeated ids)
tollway_usage_entries_replayed_total            entries read back from the WAL at start
tollway_usage_entries_skipped_total{reason}     entries not counted, by reason (classify.SKIP_REASONS)
tollway_usage_streams_rejected_total{reason}    streams refused or cut (missing identifier, malformed)
tollway_usage_unflushed_entries                 received, not yet in the database
tollway_usage_wal_bytes / _wal_segments         the WAL on disk now
tollway_usage_wal_syncs_total, _wal_written_bytes_total, _wal_torn_frames_total, _wal_write_errors_total
tollway_usage_flush_seconds (histogram)         database flush (batch) latency
tollway_usage_db_errors_total{operation}        flush: records kept in the WAL and retried;
                                                completeness: a sample or its report failed
tollway_usage_envoy_sample_failures_total{envoy} Envoy admin endpoints that did not answer
tollway_usage_node_completeness{node}           counted / (Envoy's logs_written + logs_dropped), UTC day
tollway_usage_node_logs_written{node}, _node_logs_dropped{node}, _node_counted{node}   its terms
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tollway.metrics import Labels, family
from usage.completeness import CompletenessSampler
from usage.ingest import Ingestor

P = "tollway_usage_"


def _by(label: str, counts: Mapping[str, int]) -> Iterable[tuple[Labels, float]]:
    return [({label: key}, value) for key, value in sorted(counts.items())]


def render(ingestor: Ingestor, sampler: CompletenessSampler | None = None) -> str:
    m = ingestor.metrics
    wal = ingestor.wal
    lines: list[str] = []

    def one(name: str, kind: str, help_text: str, value: float) -> None:
        lines.extend(family(P + name, kind, help_text, [({}, value)]))

    one("entries_received_total", "counter", "Access-log entries that reached the WAL.", m.received)
    one(
        "messages_received_total", "counter", "Access-log messages that reached the WAL.", m.received_messages
    )
    lines += family(
        P + "node_entries_received_total",
        "counter",
        "Access-log entries received, per Envoy node.",
        _by("node", m.entries_by_node),
    )
    one("entries_counted_total", "counter", "Records committed to the usage summaries.", m.counted)
    one("entries_duplicate_total", "counter", "Records the dedupe state refused.", m.duplicates)
    one("entries_replayed_total", "counter", "Entries read back from the WAL at start.", m.replayed)
    lines += family(
        P + "entries_skipped_total", "counter", "Entries not counted, by reason.", _by("reason", m.skipped)
    )
    lines += family(
        P + "streams_rejected_total",
        "counter",
        "Access-log streams refused or cut, by reason.",
        _by("reason", m.bad_streams),
    )
    one("unflushed_entries", "gauge", "Entries received and not yet in the database.", ingestor.unflushed)
    one("wal_bytes", "gauge", "Size of the WAL segments on disk.", ingestor.wal_size_bytes())
    one("wal_segments", "gauge", "WAL segment files on disk.", ingestor.wal_segments())
    one("wal_syncs_total", "counter", "WAL group commits (write + fsync).", m.wal_syncs)
    one("wal_written_bytes_total", "counter", "Bytes appended to the WAL.", m.wal_bytes_written)
    one(
        "wal_torn_frames_total",
        "counter",
        "Torn or corrupt WAL frames found at replay.",
        wal.torn_frames if wal is not None else 0,
    )
    one("wal_write_errors_total", "counter", "WAL writes that failed (kept in memory).", m.wal_write_errors)
    one("flushes_total", "counter", "Database flushes that completed.", m.flushes)
    lines += m.flush_seconds.render(P + "flush_seconds", "Database flush (batch) latency.")
    db_errors = {"flush": m.flush_failures}
    if sampler is not None:
        db_errors["completeness"] = sampler.db_errors
    lines += family(
        P + "db_errors_total", "counter", "Database operations that failed.", _by("operation", db_errors)
    )
    if sampler is not None:
        lines += family(
            P + "envoy_sample_failures_total",
            "counter",
            "Envoy admin endpoints that did not answer a completeness sample.",
            _by("envoy", sampler.failures),
        )
        nodes = sorted(sampler.latest.items())
        for name, key, help_text in (
            ("node_completeness", "completeness", "Counted / (Envoy's written + dropped), current UTC day."),
            ("node_logs_written", "logs_written", "Envoy's logs_written over the current UTC day."),
            ("node_logs_dropped", "logs_dropped", "Envoy's logs_dropped over the current UTC day."),
            ("node_counted", "received", "Entries counted per node over the current UTC day."),
        ):
            lines += family(
                P + name, "gauge", help_text, [({"node": node}, report[key]) for node, report in nodes]
            )
    return "\n".join(lines) + "\n"
