"""A real Redis Cluster for tests: three masters and three replicas, each a `redis-server` of the test
run's own on a free loopback port, joined with `redis-cli --cluster create --cluster-replicas 1`.

`cluster-node-timeout` is short (1 s by default) so a killed master's replica is promoted within a
few seconds (measured: about 2.5 s from kill -9 to the replica answering as master). Persistence is
off: a node that is restarted comes back empty and rejoins as a replica of whichever node took over.
Run `python -m tests.redis_cluster` to start one by hand (Ctrl-C stops it)."""

from __future__ import annotations

import random
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

from redis import Redis
from redis.crc import key_slot
from redis.exceptions import RedisError

from tests.support import bindable

MASTERS = 3
CREATE_OPTIONS = ("--cluster-replicas", "1", "--cluster-yes")
SLOTS = 16384
# The cluster bus listens on port + 10000: both must be free, so ports come from a range below 55535.
_PORT_RANGE = (20000, 45000)


class PortTaken(RuntimeError):
    """A port chosen as free was taken before the node bound it."""


def free_cluster_ports(count: int) -> list[int]:
    """Ports p, each with p + 10000 (its cluster bus) free as well."""
    chosen: list[int] = []
    while len(chosen) < count:
        port = random.randrange(*_PORT_RANGE)
        if port not in chosen and port + 10000 not in chosen and bindable(port) and bindable(port + 10000):
            chosen.append(port)
    return chosen


class RedisClusterNodes:
    """Start with `start()`, stop with `stop()`; `kill(port)` / `restart(port)` for failover tests."""

    def __init__(self, work_dir: Path, *, masters: int = MASTERS, node_timeout_ms: int = 1000) -> None:
        self.work_dir = work_dir
        self.masters = masters
        self.node_timeout_ms = node_timeout_ms
        self.ports = free_cluster_ports(masters * 2)
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def nodes(self) -> tuple[tuple[str, int], ...]:
        return tuple(("127.0.0.1", port) for port in self.ports)

    @property
    def nodes_setting(self) -> str:
        """The value for TOLLWAY_REDIS_NODES."""
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    @property
    def url(self) -> str:
        """One node's URL (TOLLWAY_REDIS_URL): the client discovers the rest."""
        return f"redis://127.0.0.1:{self.ports[0]}"

    def _spawn(self, port: int) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server binary is required"
        node_dir = self.work_dir / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        options = {
            "port": str(port),
            "bind": "127.0.0.1",
            "cluster-enabled": "yes",
            "cluster-config-file": "nodes.conf",
            "cluster-node-timeout": str(self.node_timeout_ms),
            "save": "",
            "appendonly": "no",
            # Replicas sync at once (the default waits 5 s for more replicas to share one transfer).
            "repl-diskless-sync-delay": "0",
            "dir": str(node_dir),
        }
        process = self.processes[port] = subprocess.Popen(
            [binary, *(part for name, value in options.items() for part in (f"--{name}", value))],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise PortTaken(f"redis-server on port {port} exited (port taken since it was chosen?)")
            try:
                with self.client(port) as client:
                    if int(client.info("server")["process_id"]) == process.pid:
                        return
                raise PortTaken(f"another redis-server answers on port {port}")
            except (RedisError, OSError):
                time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {port} did not start")

    def start_nodes(self) -> None:
        """The redis-server processes only, not joined: each a cluster-enabled node serving no slot.
        Ports are chosen free but may be taken before the server binds them (tests in parallel): then
        all start again on other ports."""
        for _ in range(5):
            try:
                for port in self.ports:
                    self._spawn(port)
                return
            except PortTaken:
                self.stop()
                self.ports = free_cluster_ports(len(self.ports))
        raise RuntimeError("could not start the Redis Cluster's nodes on free ports")

    def start(self) -> None:
        self.start_nodes()
        cli = shutil.which("redis-cli")
        assert cli, "redis-cli binary is required"
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports), *CREATE_OPTIONS],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        self.wait_healthy()

    def client(self, port: int) -> Redis:
        return Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2)

    def _ask(self, port: int, *command: str) -> object:
        with self.client(port) as client:
            return client.execute_command(*command)

    def alive(self) -> list[int]:
        return [port for port, process in self.processes.items() if process.poll() is None]

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until every live node sees the cluster OK, with every slot served, and every replica's link
        to its master up (so a master can be killed and its replica promoted)."""
        deadline = time.monotonic() + timeout
        problem = ""
        while time.monotonic() < deadline:
            problem = self._health_problem()
            if not problem:
                return
            time.sleep(0.1)
        raise RuntimeError(f"redis cluster not healthy: {problem}")

    def _health_problem(self) -> str:
        masters = 0
        for port in self.alive():
            try:
                info = self._info(port, "cluster")
                replication = self._info(port, "replication")
            except RedisError as error:
                return f"{port}: {error}"
            if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != str(SLOTS):
                return f"{port}: {info.get('cluster_state')}, {info.get('cluster_slots_ok')} slots ok"
            if replication.get("role") == "master":
                masters += 1
            elif replication.get("master_link_status") != "up":
                return f"{port}: replica link {replication.get('master_link_status')}"
        return "" if masters == self.masters else f"{masters} masters"

    def _info(self, port: int, section: str) -> dict[str, str]:
        """CLUSTER INFO (section "cluster") or an INFO section, as text fields."""
        with self.client(port) as client:
            raw = client.execute_command("CLUSTER INFO") if section == "cluster" else client.info(section)
        return {str(k): str(v) for k, v in dict(raw).items()}

    def _slot_ranges(self) -> list[tuple[int, int, int]]:
        """(first slot, last slot, master's port) of every range, as a live node sees them now."""
        for port in self.alive():
            ranges = self._ask(port, "CLUSTER", "SLOTS")
            assert isinstance(ranges, list)
            return [(int(start), int(end), int(master[1])) for start, end, master, *_ in ranges]
        raise RuntimeError("no node is alive")

    def master_of(self, key: str, ranges: list[tuple[int, int, int]] | None = None) -> int:
        """The port of the master serving `key`'s slot now."""
        slot = key_slot(key.encode())
        for start, end, port in ranges or self._slot_ranges():
            if start <= slot <= end:
                return port
        raise RuntimeError(f"no master serves slot {slot}")

    def subscriptions_on_every_master(self, per_master: int) -> list[str]:
        """Fresh subscription ids, `per_master` of them on each master's slots."""
        found: dict[int, list[str]] = {}
        ranges = self._slot_ranges()
        while len(found) < self.masters or any(len(ids) < per_master for ids in found.values()):
            sub = f"sub_{secrets.token_hex(6)}"
            own = found.setdefault(self.master_of("{sub:" + sub + "}", ranges), [])
            if len(own) < per_master:
                own.append(sub)
        return [sub for ids in found.values() for sub in ids]

    def master_ports(self) -> list[int]:
        return [p for p in self.alive() if self._info(p, "replication").get("role") == "master"]

    def kill(self, port: int) -> None:
        """kill -9: no goodbye to the cluster, no chance to replicate what it had not sent yet."""
        process = self.processes[port]
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def restart(self, port: int) -> None:
        """Starts a killed node again; with its nodes.conf it rejoins (as a replica, once replaced)."""
        self._spawn(port)

    def flush(self) -> None:
        for port in self.master_ports():
            self._ask(port, "FLUSHALL")

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
        for process in self.processes.values():
            process.wait(10)
        self.processes.clear()


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        cluster = RedisClusterNodes(Path(directory))
        cluster.start()
        print(f"TOLLWAY_REDIS_MODE=cluster TOLLWAY_REDIS_NODES={cluster.nodes_setting}", flush=True)
        stop = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop)
        try:
            signal.sigwait(stop)
        finally:
            cluster.stop()
