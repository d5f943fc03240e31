"""A PostgreSQL cluster of a test's own (initdb + pg_ctl from the server package), on a free loopback
port, so the test can stop it or freeze it (SIGSTOP) without touching the shared server.

initdb refuses to run as root, so under root the cluster belongs to the `postgres` system user (run
through `runuser`), in a temporary directory that user owns; otherwise it runs as the current user.
Set-up takes about two seconds (initdb without fsync)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from tests.e2e.harness import free_port

_SERVER_BINARIES = Path("/usr/lib/postgresql")
_SYSTEM_USER = "postgres"


def server_binaries() -> Path:
    """The newest installed PostgreSQL server's bin directory."""
    found = sorted(
        (path for path in _SERVER_BINARIES.glob("*/bin") if (path / "initdb").is_file()),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
    )
    assert found, f"a PostgreSQL server (initdb, pg_ctl) under {_SERVER_BINARIES} is required"
    return found[-1]


class PrivatePostgres:
    def __init__(self) -> None:
        self.bin = server_binaries()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="tollway-pg-"))
        self.data = self.root / "data"
        self.as_root = os.geteuid() == 0
        if self.as_root:
            owner = pwd.getpwnam(_SYSTEM_USER)
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self.as_root:
            command = ["runuser", "-u", _SYSTEM_USER, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=self.root)
        assert result.returncode == 0, f"{tool} failed: {result.stderr or result.stdout}"

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c max_connections=40"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options, "-w", "start"
        )

    def stop(self) -> None:
        """A clean, fast shutdown: open connections are closed, new ones refused."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def _processes(self) -> list[int]:
        """The postmaster and its children (backends, checkpointer, WAL writer, ...); none when stopped."""
        pid_file = self.data / "postmaster.pid"
        if not pid_file.exists():
            return []
        postmaster = int(pid_file.read_text().split()[0])
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == postmaster:
                children.append(int(stat.parent.name))
        return [postmaster, *children]

    def freeze(self) -> None:
        """SIGSTOP every process of the cluster: connections are still accepted by the kernel, and
        nothing answers (what a hung server or a silent network looks like to a client)."""
        for pid in self._processes():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._processes():
            os.kill(pid, signal.SIGCONT)

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.thaw()
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
