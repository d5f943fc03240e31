"""Usage metrics, read at scrape time from the ingestor's counters (a prometheus-client collector).

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
tollway_usage_node_completeness_min            the lowest completeness of any node (1 when none sampled)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tollway.metrics import Metric, counter_family, gauge_family
from usage.completeness import CompletenessSampler
from usage.ingest import Ingestor

P = "tollway_usage_"


def _by(counts: Mapping[str, float]) -> dict[tuple[str, ...], float]:
    return {(key,): value for key, value in counts.items()}


def collect(ingestor: Ingestor, sampler: CompletenessSampler | None = None) -> Iterable[Metric]:
    """Every usage family but the flush histogram (an instrument in the ingestor's registry)."""
    m = ingestor.metrics
    wal = ingestor.wal

    def one(name: str, help_text: str, value: float) -> Metric:
        make = counter_family if name.endswith("_total") else gauge_family
        return make(P + name, help_text, (), {(): value})

    yield one("entries_received_total", "Access-log entries that reached the WAL.", m.received)
    yield one("messages_received_total", "Access-log messages that reached the WAL.", m.received_messages)
    yield counter_family(
        P + "node_entries_received_total",
        "Access-log entries received, per Envoy node.",
        ("node",),
        _by(m.entries_by_node),
    )
    yield one("entries_counted_total", "Records committed to the usage summaries.", m.counted)
    yield one("entries_duplicate_total", "Records the dedupe state refused.", m.duplicates)
    yield one("entries_replayed_total", "Entries read back from the WAL at start.", m.replayed)
    yield counter_family(
        P + "entries_skipped_total", "Entries not counted, by reason.", ("reason",), _by(m.skipped)
    )
    yield counter_family(
        P + "streams_rejected_total",
        "Access-log streams refused or cut, by reason.",
        ("reason",),
        _by(m.bad_streams),
    )
    yield one("unflushed_entries", "Entries received and not yet in the database.", ingestor.unflushed)
    yield one("wal_bytes", "Size of the WAL segments on disk.", ingestor.wal_size_bytes())
    yield one("wal_segments", "WAL segment files on disk.", ingestor.wal_segments())
    yield one("wal_syncs_total", "WAL group commits (write + fsync).", m.wal_syncs)
    yield one("wal_written_bytes_total", "Bytes appended to the WAL.", m.wal_bytes_written)
    yield one(
        "wal_torn_frames_total",
        "Torn or corrupt WAL frames found at replay.",
        wal.torn_frames if wal is not None else 0,
    )
    yield one("wal_write_errors_total", "WAL writes that failed (kept in memory).", m.wal_write_errors)
    yield one("flushes_total", "Database flushes that completed.", m.flushes)
    db_errors = {"flush": m.flush_failures}
    if sampler is not None:
        db_errors["completeness"] = sampler.db_errors
    yield counter_family(
        P + "db_errors_total", "Database operations that failed.", ("operation",), _by(db_errors)
    )
    if sampler is None:
        return
    yield counter_family(
        P + "envoy_sample_failures_total",
        "Envoy admin endpoints that did not answer a completeness sample.",
        ("envoy",),
        _by(sampler.failures),
    )
    nodes = sorted(sampler.latest.items())
    for name, key, help_text in (
        ("node_completeness", "completeness", "Counted / (Envoy's written + dropped), current UTC day."),
        ("node_logs_written", "logs_written", "Envoy's logs_written over the current UTC day."),
        ("node_logs_dropped", "logs_dropped", "Envoy's logs_dropped over the current UTC day."),
        ("node_counted", "received", "Entries counted per node over the current UTC day."),
    ):
        yield gauge_family(P + name, help_text, ("node",), {(node,): report[key] for node, report in nodes})
    yield one(
        "node_completeness_min",
        "The lowest completeness of any sampled Envoy node (1 when none is sampled yet).",
        min((float(report["completeness"]) for _, report in nodes), default=1.0),
    )
