"""The gateway benchmark's load: h2load (nghttp2's, from the distribution's `nghttp2-client` package)
for the peak, closed loop, as wrk would drive it (one thread, N keep-alive HTTP/1.1 connections, each
sending its next request when the last one answered).

Why h2load rather than wrk: its `--log-file` records every request (status, latency), so p50/p99 and
the count of each status come from the same run without a Lua script, and it is one package away on
Debian/Ubuntu. Its `--rps` is not used for the fixed-rate runs: it fires every connection's request on
the same timer tick (bursts of N every 1/rate s, measured with h2load 1.52), which is not a steady
rate; bench/pacer.py spaces requests evenly instead.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

H2LOAD_PACKAGE = "nghttp2-client"


class LoadGeneratorMissing(RuntimeError):
    pass


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence; NaN when empty."""
    if not ordered:
        return math.nan
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


@dataclass
class LoadResult:
    """One measured run: what was answered within `seconds`, by status, with each request's latency."""

    seconds: float
    statuses: Counter[int] = field(default_factory=Counter)
    # Ascending, in milliseconds.
    latencies_ms: list[float] = field(default_factory=list)
    # Requests that got no HTTP answer (connection error, timeout).
    failed: int = 0

    @classmethod
    def of(cls, seconds: float, answers: Iterable[tuple[int, float]], failed: int = 0) -> LoadResult:
        """From (status, latency ms) pairs; status 0 or below counts as failed."""
        result = cls(seconds=seconds, failed=failed)
        for status, latency_ms in answers:
            if status <= 0:
                result.failed += 1
                continue
            result.statuses[status] += 1
            result.latencies_ms.append(latency_ms)
        result.latencies_ms.sort()
        return result

    @property
    def answered(self) -> int:
        return sum(self.statuses.values())

    @property
    def rate(self) -> float:
        return self.answered / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok_rate(self) -> float:
        """2xx answers per second: what the gateway delivered (a 503 after a timed-out call is fast to
        count but is no service)."""
        ok = sum(count for status, count in self.statuses.items() if 200 <= status < 300)
        return ok / self.seconds if self.seconds > 0 else 0.0

    @property
    def non_2xx(self) -> int:
        return sum(count for status, count in self.statuses.items() if not 200 <= status < 300) + self.failed

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.answered,
            "seconds": round(self.seconds, 3),
            "requests_per_second": round(self.rate, 1),
            "ok_per_second": round(self.ok_rate, 1),
            "p50_ms": round(self.p(0.5), 3),
            "p99_ms": round(self.p(0.99), 3),
            "non_2xx": self.non_2xx,
            "failed": self.failed,
            "statuses": {str(status): count for status, count in sorted(self.statuses.items())},
        }


def parse_h2load_log(lines: Iterable[str], seconds: float) -> LoadResult:
    """h2load --log-file rows: start (µs since epoch), HTTP status (-1 when none), µs to the response's
    end, tab-separated (later h2load versions may add columns)."""
    answers = []
    for line in lines:
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        answers.append((int(parts[1]), int(parts[2]) / 1000.0))
    return LoadResult.of(seconds, answers)


# "errored": requests without an HTTP answer (network failure, reset, timeout); h2load's "failed" also
# counts non-2xx/3xx answers, which the log holds with their status.
_ERRORED = re.compile(r"requests: .* (\d+) errored")


def _apt_install(package: str) -> str:
    """Installs a distribution package when this process may; returns what went wrong otherwise."""
    apt = shutil.which("apt-get")
    if apt is None:
        return "no apt-get on this machine"
    if os.geteuid() != 0:
        return "installing packages needs root"
    quiet = {"DEBIAN_FRONTEND": "noninteractive", **os.environ}
    done = subprocess.run([apt, "install", "-y", "-q", package], env=quiet, capture_output=True)
    if done.returncode != 0:  # the package lists may be missing on a fresh machine
        subprocess.run([apt, "update", "-q"], env=quiet, capture_output=True)
        done = subprocess.run([apt, "install", "-y", "-q", package], env=quiet, capture_output=True)
    return "" if done.returncode == 0 else done.stderr.decode(errors="replace")[-500:]


def ensure_h2load(install: bool = True) -> str:
    """The h2load binary; installed from the distribution's packages when missing and allowed."""
    found = shutil.which("h2load")
    if found:
        return found
    problem = _apt_install(H2LOAD_PACKAGE) if install else "not installing (--no-install)"
    found = shutil.which("h2load")
    if found:
        return found
    raise LoadGeneratorMissing(
        f"the gateway benchmark needs h2load and could not install it ({problem.strip()}); "
        f"install it yourself: apt-get install -y {H2LOAD_PACKAGE} (Debian/Ubuntu), "
        "dnf install nghttp2 (Fedora), brew install nghttp2 (macOS)"
    )


def h2load_version(binary: str) -> str:
    done = subprocess.run([binary, "--version"], capture_output=True, text=True)
    return done.stdout.strip()


def _duration(seconds: float) -> str:
    """h2load's duration syntax takes whole units: milliseconds here."""
    return f"{max(1, round(seconds * 1000))}ms"


def peak(
    binary: str,
    url: str,
    headers: Mapping[str, str],
    *,
    seconds: float,
    warmup: float,
    connections: int,
) -> LoadResult:
    """Closed loop: `connections` HTTP/1.1 connections from one thread, as fast as answers come back;
    only requests made after `warmup` seconds count."""
    with tempfile.TemporaryDirectory(prefix="tollway-h2load-") as tmp:
        log = Path(tmp) / "requests.tsv"
        command = [binary, "--h1", "-t", "1", "-c", str(connections), "-D", _duration(seconds)]
        if warmup > 0:
            command += ["--warm-up-time", _duration(warmup)]
        for name, value in headers.items():
            command += ["-H", f"{name}: {value}"]
        command += [f"--log-file={log}", url]
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + warmup + 60)
        if done.returncode != 0 or not log.exists():
            raise RuntimeError(
                f"h2load failed ({done.returncode}): {done.stderr.strip() or done.stdout[-500:]}"
            )
        with log.open() as rows:
            result = parse_h2load_log(rows, seconds)
    errored = _ERRORED.search(done.stdout)
    if errored:
        # Requests that got no answer may be missing from the log; count them as failed either way.
        result.failed = max(result.failed, int(errored.group(1)))
    return result
