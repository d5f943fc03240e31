"""Scenario C's stack: Tollway as an operator runs it, `tollway up` (its services and the Envoy it
launches, tollway/app/launcher.py), configured by TOLLWAY_* variables only, on a private PostgreSQL
database (created on the server `--database` names, dropped afterwards) or an SQLite file, with the
Redis store on the Redis at `--redis-url` when the scenario asks for it.

The plan, API, application, subscription and key are created through the admin API, as a user would;
usage is read back through it (UsageService.GetUsageTotals), which is how the smoke test proves the
access log was received and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import grpc
from redis import Redis
from redis.exceptions import RedisError

from bench.envoys import API, REQUEST_PATH
from bench.scale_replicas import free_port, free_port_run, tollway_command
from bench.scale_seed import create_database, drop_database, private_url
from throttle.limits import subscription_tag
from tollway.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from tollway.settings import ALL_COMPONENTS
from tollway.store.v1 import store_pb2, store_pb2_grpc
from tollway.usage.v1 import usage_pb2, usage_pb2_grpc

# `tollway up` with workers on a busy 2-core machine has needed more than a minute to serve.
STARTUP_SECONDS = 120.0
_DECISION = re.compile(
    r'^tollway_throttle_decisions_total\{[^}]*result="([^"]+)"[^}]*\} (\S+)$', re.MULTILINE
)
_LOOP_LAG = re.compile(r'^tollway_event_loop_lag_seconds_bucket\{le="([^"]+)"\} (\S+)$', re.MULTILINE)


@dataclass(frozen=True)
class Limits:
    """The plan of scenario C and the bucket of scenario B: unlimited in effect for the benchmark, small
    in the smoke test so some requests get 429."""

    per_second: int
    per_minute: int


@dataclass(frozen=True)
class TollwayMode:
    """How one C row runs Tollway: extra TOLLWAY_* variables and `tollway up` options."""

    store: str = "memory"
    env: Mapping[str, str] = field(default_factory=dict)
    up_args: Sequence[str] = ()
    # Usage in a process of its own: a `tollway serve` running only the usage component, Envoy's access
    # log pointed at it (TOLLWAY_USAGE_ENDPOINTS), `tollway up` running the rest. Classification and
    # the database flushes then leave the process answering Check and ShouldRateLimit.
    usage_apart: bool = False

    @property
    def workers(self) -> int:
        """Processes serving Envoy (`--workers N`; each has its metrics on the metrics port + k)."""
        args = list(self.up_args)
        return int(args[args.index("--workers") + 1]) if "--workers" in args else 1


def get_status(url: str, headers: Mapping[str, str], timeout: float = 5.0) -> int:
    request = urllib.request.Request(url, headers=dict(headers))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        error.read()
        return int(error.code)


def wait_for_status(url: str, headers: Mapping[str, str], status: int, deadline: float) -> None:
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = get_status(url, headers, timeout=2.0)
            if last == status:
                return
        except OSError as error:
            last = error
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer {status} in time (last: {last})")


class TollwayGateway:
    """`tollway up` in a child process, seeded with one key on one plan, ready to take traffic."""

    def __init__(
        self,
        work_dir: Path,
        upstream_port: int,
        limits: Limits,
        mode: TollwayMode,
        *,
        database: str,
        redis_url: str,
        envoy_concurrency: int,
    ) -> None:
        self.work_dir = work_dir
        self.upstream_port = upstream_port
        self.limits = limits
        self.mode = mode
        self.redis_url = redis_url
        self.gateway_port = free_port()
        self.grpc_addr = f"127.0.0.1:{free_port_run(mode.workers)}"
        self.admin_addr = f"127.0.0.1:{free_port()}"
        self.envoy_admin_addr = f"127.0.0.1:{free_port()}"
        self.metrics_port = free_port_run(mode.workers)
        self.token = secrets.token_urlsafe(24)
        self.server_url = "" if database == "sqlite" else database
        self.database_name = f"tollway_bench_{secrets.token_hex(4)}"
        self.database_url = (
            f"sqlite:///{work_dir / 'tollway.db'}"
            if database == "sqlite"
            else private_url(database, self.database_name)
        )
        self.envoy_concurrency = envoy_concurrency
        self.log_path = work_dir / "tollway-up.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.channel: grpc.Channel | None = None
        # The usage process of a `usage_apart` mode, and the admin channel usage is read through.
        self.usage_grpc_addr = f"127.0.0.1:{free_port()}" if mode.usage_apart else self.grpc_addr
        self.usage_admin_addr = f"127.0.0.1:{free_port()}" if mode.usage_apart else self.admin_addr
        self.usage_log_path = work_dir / "tollway-usage.log"
        self.usage_process: subprocess.Popen[bytes] | None = None
        self.usage_channel: grpc.Channel | None = None
        self.key = ""
        self.subscription_id = ""

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if self.mode.store == "redis":
            self._check_redis()
        if self.server_url:
            try:
                asyncio.run(create_database(self.server_url, self.database_name))
            except (OSError, asyncpg.PostgresError) as error:
                raise RuntimeError(
                    f"cannot create a database on {self.server_url} ({error}); "
                    "--database sqlite runs Tollway on an SQLite file instead"
                ) from None
        env = {
            **os.environ,
            "TOLLWAY_DATA_DIR": str(self.work_dir / "data"),
            "TOLLWAY_DATABASE_URL": self.database_url,
            "TOLLWAY_GRPC_ADDR": self.grpc_addr,
            "TOLLWAY_ADMIN_ADDR": self.admin_addr,
            "TOLLWAY_ADMIN_TOKEN": self.token,
            "TOLLWAY_GATEWAY_ADDR": f"127.0.0.1:{self.gateway_port}",
            "TOLLWAY_ENVOY_ADMIN_ADDR": self.envoy_admin_addr,
            "TOLLWAY_ENVOY_CONCURRENCY": str(self.envoy_concurrency),
            "TOLLWAY_RATELIMIT_STORE": self.mode.store,
            "TOLLWAY_REDIS_URL": self.redis_url,
            "TOLLWAY_METRICS_ADDR": f"127.0.0.1:{self.metrics_port}",
            # The portal is not measured, but must not collide with a `make run` on its default ports.
            "TOLLWAY_PORTAL_ADDR": f"127.0.0.1:{free_port()}",
            "TOLLWAY_PORTAL_GRPC_ADDR": f"127.0.0.1:{free_port()}",
            "TOLLWAY_LOG_LEVEL": "WARNING",
            **self.mode.env,
        }
        main_env = env
        if self.mode.usage_apart:
            main_env = {
                **env,
                "TOLLWAY_COMPONENTS": ",".join(c for c in ALL_COMPONENTS if c != "usage"),
                "TOLLWAY_USAGE_ENDPOINTS": self.usage_grpc_addr,
            }
        self.process = _spawn([*tollway_command(), "up", *self.mode.up_args], main_env, self.log_path)
        try:
            deadline = time.monotonic() + STARTUP_SECONDS
            self._seed_when_ready(deadline)
            if self.mode.usage_apart:
                # Started once `tollway up` serves: it has written the data directory's secrets and
                # Envoy-facing certificates, which this process reads.
                self._start_usage(env, deadline)
            wait_for_status(self.url, self.headers, 200, deadline)
        except RuntimeError as error:
            tail = self.log_tail()
            self.stop()
            raise RuntimeError(f"{error}; `tollway up` log:\n{tail}") from None
        except BaseException:
            self.stop()
            raise

    def _start_usage(self, env: Mapping[str, str], deadline: float) -> None:
        usage_env = {
            **env,
            "TOLLWAY_COMPONENTS": "usage",
            "TOLLWAY_GRPC_ADDR": self.usage_grpc_addr,
            "TOLLWAY_ADMIN_ADDR": self.usage_admin_addr,
            "TOLLWAY_METRICS_ADDR": f"127.0.0.1:{free_port()}",
            "TOLLWAY_USAGE_WAL_DIR": str(self.work_dir / "usage-wal"),
        }
        self.usage_process = _spawn([*tollway_command(), "serve"], usage_env, self.usage_log_path)
        self.usage_channel = grpc.insecure_channel(self.usage_admin_addr)
        timeout = max(1.0, deadline - time.monotonic())
        try:
            grpc.channel_ready_future(self.usage_channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            tail = self.log_tail(usage=True)
            raise RuntimeError(f"the usage process did not serve in time:\n{tail}") from None

    def stop(self) -> None:
        for channel in (self.channel, self.usage_channel):
            if channel is not None:
                channel.close()
        self.channel = self.usage_channel = None
        for process in (self.process, self.usage_process):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        if self.mode.store == "redis" and self.subscription_id:
            self._forget_counters()
        if self.server_url:
            with contextlib.suppress(Exception):
                asyncio.run(drop_database(self.server_url, self.database_name))

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"`tollway up` exited with {self.process.returncode}:\n{self.log_tail()}")
        if self.usage_process is not None and self.usage_process.poll() is not None:
            raise RuntimeError(
                f"the usage process exited with {self.usage_process.returncode}:\n{self.log_tail(usage=True)}"
            )

    def log_tail(self, lines: int = 25, *, usage: bool = False) -> str:
        path = self.usage_log_path if usage else self.log_path
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def python_pids(self) -> list[int]:
        """Tollway's service processes: `tollway up` and its workers, and the usage process, if any."""
        apart = [self.usage_process.pid] if self.usage_process is not None else []
        return [pid for pid in self._tree() if not is_envoy(pid)] + apart

    def envoy_pids(self) -> list[int]:
        """The Envoy `tollway up` launched."""
        return [pid for pid in self._tree() if is_envoy(pid)]

    def _tree(self) -> list[int]:
        return [self.pid, *children(self.pid)]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}{REQUEST_PATH}"

    @property
    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.key}

    # -- admin API -------------------------------------------------------------------------------------

    def _call(self, method: grpc.UnaryUnaryMultiCallable, request: object) -> object:  # type: ignore[type-arg]
        return method(request, metadata=(("authorization", f"Bearer {self.token}"),), timeout=30)

    def _seed_when_ready(self, deadline: float) -> None:
        self.channel = grpc.insecure_channel(self.admin_addr)
        try:
            grpc.channel_ready_future(self.channel).result(timeout=max(1.0, deadline - time.monotonic()))
        except grpc.FutureTimeoutError:
            self.check_alive()
            raise RuntimeError(f"`tollway up` admin port not up in time:\n{self.log_tail()}") from None
        catalog = catalog_pb2_grpc.CatalogServiceStub(self.channel)
        store = store_pb2_grpc.StoreServiceStub(self.channel)
        limits = catalog_pb2.PlanLimits(
            requests_per_second=self.limits.per_second, requests_per_minute=self.limits.per_minute
        )
        plan = catalog_pb2.Plan(name="bench", limits=limits)
        plan = self._call(catalog.CreatePlan, catalog_pb2.CreatePlanRequest(plan=plan)).plan  # type: ignore[attr-defined]
        api = catalog_pb2.Api(
            name=API.name,
            version=API.version,
            context_path=API.context_path,
            upstream_urls=[f"http://127.0.0.1:{self.upstream_port}"],
            plan_ids=[plan.id],
        )
        api = self._call(catalog.CreateApi, catalog_pb2.CreateApiRequest(api=api)).api  # type: ignore[attr-defined]
        self._call(catalog.PublishApi, catalog_pb2.PublishApiRequest(id=api.id))
        self.api_id = api.id
        application = store_pb2.Application(name="bench", owner="bench@tollway.local")
        application = self._call(
            store.CreateApplication, store_pb2.CreateApplicationRequest(application=application)
        ).application  # type: ignore[attr-defined]
        subscription = self._call(
            store.CreateSubscription,
            store_pb2.CreateSubscriptionRequest(
                application_id=application.id, api_id=api.id, plan_id=plan.id
            ),
        ).subscription  # type: ignore[attr-defined]
        self.subscription_id = subscription.id
        issued = self._call(
            store.CreateApiKey, store_pb2.CreateApiKeyRequest(application_id=application.id, name="bench")
        )
        self.key = issued.key  # type: ignore[attr-defined]

    def log_entries(self) -> int:
        """Access-log entries that reached usage's WAL (UsageService.GetIngestionStats): what arrived,
        whether or not it can be attributed to the API (an ext_authz timeout carries no metadata)."""
        stub = usage_pb2_grpc.UsageServiceStub(self._usage_admin_channel)
        response = self._call(stub.GetIngestionStats, usage_pb2.GetIngestionStatsRequest())
        return int(response.received)  # type: ignore[attr-defined]

    def throttle_decisions(self) -> Counter[str]:
        """The throttle's decisions so far by result (ok, over_limit, store_unavailable_allowed, ...),
        summed over the workers (tollway_throttle_decisions_total on each one's metrics port)."""
        total: Counter[str] = Counter()
        for worker in range(self.mode.workers):
            url = f"http://127.0.0.1:{self.metrics_port + worker}/metrics"
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
            for match in _DECISION.finditer(text):
                total[match.group(1)] += int(float(match.group(2)))
        return total

    def loop_lag(self) -> dict[float, float]:
        """The event-loop lag histogram's cumulative bucket counts by upper bound (seconds), summed over
        the workers (tollway_event_loop_lag_seconds on each one's metrics port)."""
        total: dict[float, float] = {}
        for worker in range(self.mode.workers):
            url = f"http://127.0.0.1:{self.metrics_port + worker}/metrics"
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
            for match in _LOOP_LAG.finditer(text):
                bound = float(match.group(1))
                total[bound] = total.get(bound, 0.0) + float(match.group(2))
        return total

    def usage_requests(self) -> int:
        """Requests to the API that usage has counted (every outcome class, refused ones included)."""
        stub = usage_pb2_grpc.UsageServiceStub(self._usage_admin_channel)
        request = usage_pb2.GetUsageTotalsRequest(
            filter=usage_pb2.UsageFilter(api_id=self.api_id), group_by=[usage_pb2.DIMENSION_API]
        )
        now = datetime.now(UTC)
        request.start_time.FromDatetime(now - timedelta(hours=1))
        request.end_time.FromDatetime(now + timedelta(hours=1))
        response = self._call(stub.GetUsageTotals, request)
        return sum(int(group.counts.requests) for group in response.groups)  # type: ignore[attr-defined]

    @property
    def _usage_admin_channel(self) -> grpc.Channel:
        """The admin channel of the process running usage."""
        channel = self.usage_channel if self.mode.usage_apart else self.channel
        assert channel is not None
        return channel

    def _check_redis(self) -> None:
        """A Redis-store row on an unreachable Redis would measure the fail-open path: refuse it."""
        client = Redis.from_url(self.redis_url, socket_timeout=2, socket_connect_timeout=2)
        try:
            client.ping()
        except RedisError as error:
            raise RuntimeError(
                f"Redis at {self.redis_url} does not answer ({error}); see --redis-url"
            ) from None
        finally:
            client.close()

    def _forget_counters(self) -> None:
        """The run's counters would otherwise stay in the shared Redis until the billing period ends."""
        with contextlib.suppress(Exception):
            client = Redis.from_url(self.redis_url)
            try:
                keys = list(
                    client.scan_iter(match=f"tw:{subscription_tag(self.subscription_id)}*", count=1000)
                )
                if keys:
                    client.delete(*keys)
            finally:
                client.close()


def _spawn(command: list[str], env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            command,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def children(pid: int) -> list[int]:
    """Every live descendant of `pid` (Linux /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def is_envoy(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "envoy"
    except OSError:
        return False
