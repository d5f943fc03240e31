"""The gateway benchmark's scenarios: what runs behind one listener for each row of the table.

    U  the upstream alone (an Envoy answering 200 itself): proves it is not what sets the pace
    A  Envoy → upstream
    B  Envoy with in-process api_key_auth + local_ratelimit: the ceiling
    N  no-op Python ext_authz + ratelimit + access log in one process: the floor of two calls
    F  no-op Python ext_authz + access log only: the floor of one call
    C-* Tollway (`tollway up`) in each of its modes: memory store, Redis store, fused (one call),
       several workers

A new Tollway mode is one more `TollwayMode` in TOLLWAY_ROWS; a mode whose setting or `tollway up`
option this checkout does not have is reported "not available" instead of being run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.envoys import REQUEST_PATH, gateway_bootstrap, link_settings, start_envoy, upstream_bootstrap
from bench.noop_services import NoopServices
from bench.scale_replicas import free_port
from bench.tollway_stack import Limits, TollwayGateway, TollwayMode, wait_for_status
from keymgr.keys import new_key
from tollway.envoy import EnvoyProcess
from tollway.settings import Settings
from xds.resources import LISTENER_NAME

# Effectively unlimited (scenario B's bucket, scenario C's plan) and, for the smoke test, small enough
# that a second of traffic at 100 requests/s meets 429s.
UNLIMITED = Limits(per_second=1_000_000, per_minute=10**9)
SMOKE_LIMITS = Limits(per_second=20, per_minute=10**9)
DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class LabOptions:
    envoy_concurrency: int = 1
    database: str = DEFAULT_DATABASE
    redis_url: str = DEFAULT_REDIS
    limits: Limits = UNLIMITED
    # Envoy's deadlines for Check and ShouldRateLimit, the same for N, F and C; 0 = Tollway's defaults
    # (the benchmark). The smoke test lengthens them: it proves the set-up, and a machine busy with
    # other work must not turn a slow answer into a 503 there.
    authz_timeout_ms: int = 0
    ratelimit_timeout_ms: int = 0
    # The Envoy-facing link (TOLLWAY_ENVOY_AUTH) of Tollway's rows and of the floors N and F alike.
    envoy_auth: str = Settings().envoy_auth
    # Tollway's deadline for each Redis call (0 = its default); past it, the failure mode decides.
    redis_timeout_ms: int = 0

    def tollway_env(self) -> dict[str, str]:
        env = {Settings.env_name("envoy_auth"): self.envoy_auth}
        if self.authz_timeout_ms:
            env[Settings.env_name("authz_timeout_ms")] = str(self.authz_timeout_ms)
        if self.ratelimit_timeout_ms:
            env[Settings.env_name("ratelimit_timeout_ms")] = str(self.ratelimit_timeout_ms)
        if self.redis_timeout_ms:
            env[Settings.env_name("redis_timeout_ms")] = str(self.redis_timeout_ms)
        return env


@dataclass
class Target:
    """One gateway under test, as the load sees it, and what the benchmark reads back from it."""

    port: int
    headers: dict[str, str]
    # Envoy's admin address and the listener's stat prefix (the requests it took).
    envoy_admin: str
    stat_prefix: str = LISTENER_NAME
    # What a request with a wrong key gets: 401 where keys are checked (B, C), 200 elsewhere.
    wrong_key_status: int = 200
    # Access-log entries received so far (N, F: the no-op's count; C: what reached usage's WAL);
    # None = no access log.
    received: Callable[[], int] | None = None
    # C: requests usage has counted for the API (every outcome class).
    counted: Callable[[], int] | None = None
    # C: the throttle's decisions so far by result (store_unavailable_allowed = admitted uncounted).
    decisions: Callable[[], Counter[str]] | None = None
    # C: the event-loop lag histogram's cumulative counts by upper bound in seconds (how long one step
    # of work held the loop); None where there is none.
    loop_lag: Callable[[], dict[float, float]] | None = None
    # Calls the no-op services answered (N, F).
    calls: Callable[[], dict[str, int]] | None = None
    # Process ids whose CPU counts as the Python side, and Envoy's.
    python_pids: Callable[[], list[int]] = field(default=lambda: [])
    envoy_pids: Callable[[], list[int]] = field(default=lambda: [])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{REQUEST_PATH}"

    @property
    def path(self) -> str:
        return REQUEST_PATH

    def wrong_headers(self) -> dict[str, str]:
        return {"x-api-key": new_key().full_key}


class Lab:
    """What every scenario shares: the upstream Envoy (and A's, kept up for the fixed-rate runs) and a
    working directory; opens each scenario's gateway on demand."""

    def __init__(self, work_dir: Path, options: LabOptions) -> None:
        self.work_dir = work_dir
        self.options = options
        self.upstream_port = free_port()
        self._stack = contextlib.ExitStack()
        self._count = 0

    def __enter__(self) -> Lab:
        upstream = start_envoy(upstream_bootstrap(self.upstream_port), self.work_dir / "upstream", 1)
        self._stack.callback(upstream.stop)
        self.upstream = Target(
            self.upstream_port, {}, upstream.admin_address, "upstream", envoy_pids=lambda: [upstream.pid or 0]
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _dir(self, name: str) -> Path:
        self._count += 1
        return self.work_dir / f"{self._count:02d}-{name}"

    @contextlib.contextmanager
    def static(self, chain: str, name: str) -> Iterator[Target]:
        """A, B, N or F: a static Envoy (bench/envoys.py), with the no-op services for N and F."""
        with contextlib.ExitStack() as stack:
            noop = None
            services = ("127.0.0.1", 1)
            link_dir = self.work_dir / "envoy-link"
            if chain in ("tollway", "authz"):
                noop = NoopServices.start(link_settings(link_dir, self.options.envoy_auth).envoy_facing)
                stack.callback(noop.stop)
                services = noop.address
            key = new_key().full_key
            port = free_port()
            settings = link_settings(
                link_dir,
                self.options.envoy_auth,
                port,
                services,
                (self.options.authz_timeout_ms, self.options.ratelimit_timeout_ms),
            )
            bootstrap = gateway_bootstrap(
                chain, settings, self.upstream_port, api_key=key, per_second=self.options.limits.per_second
            )
            envoy = start_envoy(bootstrap, self._dir(name), self.options.envoy_concurrency)
            stack.callback(envoy.stop)
            target = Target(port, {"x-api-key": key}, envoy.admin_address, envoy_pids=_pid_of(envoy))
            if chain == "apikey":
                target.wrong_key_status = 401
            if noop is not None:
                target.received = lambda: noop.snapshot()["log_entries"]
                target.calls = noop.snapshot
                target.python_pids = lambda: [noop.pid]
            wait_for_status(target.url, target.headers, 200, _deadline())
            yield target

    @contextlib.contextmanager
    def tollway(self, mode: TollwayMode, name: str) -> Iterator[Target]:
        """A C row: `tollway up` in `mode`, seeded with one key on the lab's plan."""
        options = self.options
        mode = dataclasses.replace(mode, env={**options.tollway_env(), **mode.env})
        gateway = TollwayGateway(
            self._dir(name),
            self.upstream_port,
            options.limits,
            mode,
            database=options.database,
            redis_url=options.redis_url,
            envoy_concurrency=options.envoy_concurrency,
        )
        gateway.start()
        try:
            yield Target(
                gateway.gateway_port,
                gateway.headers,
                gateway.envoy_admin_addr,
                wrong_key_status=401,
                received=gateway.log_entries,
                counted=gateway.usage_requests,
                decisions=gateway.throttle_decisions,
                loop_lag=gateway.loop_lag,
                python_pids=gateway.python_pids,
                envoy_pids=gateway.envoy_pids,
            )
            gateway.check_alive()
        finally:
            gateway.stop()


def _pid_of(envoy: EnvoyProcess) -> Callable[[], list[int]]:
    return lambda: [envoy.pid] if envoy.pid is not None else []


def _deadline(seconds: float = 30.0) -> float:
    return time.monotonic() + seconds


# --- the rows ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    # Static chain (bench/envoys.py CHAINS) or a Tollway mode.
    chain: str = ""
    mode: TollwayMode | None = None
    # The floor a C row is compared with (N: two calls per request, F: one).
    floor: str = ""

    def open(self, lab: Lab) -> contextlib.AbstractContextManager[Target]:
        if self.name == "U":
            return contextlib.nullcontext(lab.upstream)
        if self.mode is not None:
            return lab.tollway(self.mode, self.name)
        return lab.static(self.chain, self.name)

    def unavailable(self) -> str:
        """Why this checkout cannot run the row ("" when it can)."""
        return "" if self.mode is None else mode_unavailable(self.mode)


STATIC_ROWS = (
    Scenario("U", "upstream alone"),
    Scenario("A", "Envoy → upstream", chain="none"),
    Scenario("B", "api_key_auth + local_ratelimit", chain="apikey"),
    Scenario("N", "no-op authz + ratelimit + log", chain="tollway"),
    Scenario("F", "no-op authz + log", chain="authz"),
)
FUSED = {"TOLLWAY_THROTTLE_MODE": "authz"}
TOLLWAY_ROWS = (
    Scenario("C-memory", "Tollway, memory", mode=TollwayMode("memory"), floor="N"),
    Scenario("C-redis", "Tollway, Redis", mode=TollwayMode("redis"), floor="N"),
    Scenario("C-fused", "Tollway fused, memory", mode=TollwayMode("memory", FUSED), floor="F"),
    Scenario("C-fused-redis", "Tollway fused, Redis", mode=TollwayMode("redis", FUSED), floor="F"),
    Scenario(
        "C-usage-apart",
        "Tollway, memory, usage in its own process",
        mode=TollwayMode("memory", usage_apart=True),
        floor="N",
    ),
    Scenario(
        "C-workers",
        "Tollway 2 workers, Redis",
        mode=TollwayMode("redis", up_args=("--workers", "2")),
        floor="N",
    ),
)
SCENARIOS = {row.name: row for row in (*STATIC_ROWS, *TOLLWAY_ROWS)}


def _up_options() -> set[str]:
    import typer.main

    from tollway.app.cli import app

    command: Any = typer.main.get_command(app)
    return {option for param in command.commands["up"].params for option in param.opts}


def mode_unavailable(mode: TollwayMode) -> str:
    """Empty when this checkout's Tollway knows every setting and `tollway up` option the mode uses."""
    known = {Settings.env_name(item.name) for item in dataclasses.fields(Settings)}
    for name, value in mode.env.items():
        if name not in known:
            return f"{name} is not a setting of this Tollway"
        try:
            Settings.read_env({name: value})
        except ValueError as error:
            return f"{name}={value} is refused: {error}"
    wanted = [arg for arg in mode.up_args if arg.startswith("--")]
    missing = [arg for arg in wanted if arg not in _up_options()] if wanted else []
    if missing:
        return f"`tollway up` has no {', '.join(missing)}"
    return ""
