"""The HTTP/2 keepalive policy between Envoy and Tollway's gRPC servers, stated once for both sides.

Envoy pings each of its Tollway clusters (xds, keymgr, throttle, usage) every `envoy_interval` seconds
and drops a connection whose ping is unanswered after `envoy_timeout`: a dead Tollway process is noticed
within seconds. A grpc-python server by default accepts a ping without data at most every 5 minutes and
sends GOAWAY `too_many_pings` after two strikes; with Envoy's 30 s pings an idle `make run` stack lost its
ADS stream 13 times in 37 minutes. So the servers accept pings at half Envoy's interval, without calls
too, and ping Envoy themselves (`server_ping`) to notice a vanished Envoy.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KeepalivePolicy:
    # Envoy -> Tollway: Envoy's `connection_keepalive` on every Tollway cluster.
    envoy_interval: float = 30.0
    envoy_timeout: float = 5.0
    # What the servers accept: pings no closer than this (half Envoy's interval leaves room for jitter).
    server_min_ping_interval: float = 15.0
    # Tollway -> Envoy: the servers' own pings and how long they wait for the answer.
    server_ping: float = 60.0
    server_ping_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.envoy_interval < self.server_min_ping_interval:
            raise ValueError(
                f"Envoy would ping every {self.envoy_interval} s, more often than the servers accept "
                f"({self.server_min_ping_interval} s): they would answer GOAWAY too_many_pings"
            )

    def server_options(self) -> list[tuple[str, int]]:
        """grpc server channel arguments that accept Envoy's pings and send their own."""
        return [
            ("grpc.http2.min_ping_interval_without_data_ms", _ms(self.server_min_ping_interval)),
            # Envoy keeps idle connections (no call in flight) alive with pings too.
            ("grpc.keepalive_permit_without_calls", 1),
            # Strikes count pings closer than the minimum; 0 would mean "never GOAWAY", hiding a
            # misconfigured peer. The default (2) stays, the interval above keeps Envoy clear of it.
            ("grpc.http2.max_ping_strikes", 2),
            ("grpc.keepalive_time_ms", _ms(self.server_ping)),
            ("grpc.keepalive_timeout_ms", _ms(self.server_ping_timeout)),
            # The servers' own pings go out on idle connections as well (0: no limit).
            ("grpc.http2.max_pings_without_data", 0),
        ]

    def envoy_keepalive(self) -> dict[str, str]:
        """Envoy's `connection_keepalive` (KeepaliveSettings) in bootstrap JSON form."""
        return {
            "interval": _envoy_duration(self.envoy_interval),
            "timeout": _envoy_duration(self.envoy_timeout),
        }


KEEPALIVE = KeepalivePolicy()


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _envoy_duration(seconds: float) -> str:
    return f"{_ms(seconds) / 1000:.3f}s"
