"""What every admin command of the `tollway` CLI shares: the connection options, the channel to the admin
port, the call that turns gRPC errors into clean CLI errors, the output (tollway/cli_output.py), the
value parsers, and the root command group that holds the vocabulary together.

Each component's CLI module builds its commands from these, so the `--addr`/`--token` pair, the TLS
variables and the exit codes are declared once: 0 on success, 1 when the server refuses or cannot be
reached (message on stderr, with the gRPC status), 2 for usage errors (typer's own, or a parser's
`BadParameter`).

One vocabulary: the same thing has the same option name in every command (`--subscription`,
`--application`, `--api`, `--plan`, `--month`/`--start`/`--end`; `--output json|table` on every admin
command). Earlier spellings (`--sub`, `--app`) still work as hidden aliases: `TollwayGroup` rewrites
them before parsing, so no command's help lists them. tests/cli/test_cli_vocabulary.py walks every
command to keep it so.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Generic, NoReturn, TypeVar

import typer
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from typer.core import TyperGroup

from tollway.cli_output import Output, emit
from tollway.settings import Settings

__all__ = ["Output", "emit"]  # re-exported: every component's CLI prints through them

# gRPC is imported where a call is made: `tollway --help` and usage errors never pay for it.
if TYPE_CHECKING:
    import grpc

RPC_TIMEOUT_SECONDS = 10.0
# Plain dataclass defaults; Settings.from_env() would create secrets on disk.
_SETTINGS_DEFAULTS = Settings()
DEFAULT_ADMIN_ADDR = _SETTINGS_DEFAULTS.admin_addr

ServiceStub = TypeVar("ServiceStub")
Response = TypeVar("Response")
Parsed = TypeVar("Parsed")

# --------------------------------------------------------------------------------------------------
# Connection options (every admin command takes `addr: AdminAddr = DEFAULT_ADMIN_ADDR,
# token: AdminToken = None`)
# --------------------------------------------------------------------------------------------------

AdminAddr = Annotated[
    str,
    typer.Option(
        "--addr",
        envvar=Settings.env_name("admin_addr"),
        help="Admin gRPC server, host:port.",
        rich_help_panel="Connection",
    ),
]
AdminToken = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar=Settings.env_name("admin_token"),
        # Never show the token (or that it came from the environment) in help output.
        show_default=False,
        help="Admin bearer token; defaults to <TOLLWAY_DATA_DIR>/admin-token written by `tollway serve`.",
        rich_help_panel="Connection",
    ),
]


@dataclass(frozen=True)
class ClientEnvironment:
    """The client side's view of the environment beyond --addr/--token: where the embedded server keeps
    its generated token, and the PEM files for TLS (CA only) or mTLS (CA, client certificate and key)."""

    data_dir: Path = _SETTINGS_DEFAULTS.data_dir
    tls_ca: str = ""
    tls_client_cert: str = ""
    tls_client_key: str = ""
    # The token TOLLWAY_ADMIN_TOKEN holds (to tell it from --token when naming the token's source), and
    # whether the data dir was chosen (TOLLWAY_DATA_DIR) or is the default, relative to the cwd.
    env_token: str = field(default="", repr=False)
    data_dir_chosen: bool = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> ClientEnvironment:
        """Read through the settings' one loader (declared there with their variable names)."""
        source = os.environ if environ is None else environ
        settings = Settings.read_env(environ)
        return cls(
            data_dir=settings.data_dir,
            tls_ca=settings.admin_client_tls_ca_file,
            tls_client_cert=settings.admin_client_tls_cert_file,
            tls_client_key=settings.admin_client_tls_key_file,
            env_token=source.get(Settings.env_name("admin_token"), "").strip(),
            data_dir_chosen=bool(source.get(Settings.env_name("data_dir"), "")),
        )


def admin_channel(addr: str, environment: ClientEnvironment) -> grpc.Channel:
    """Plaintext by default; TLS when a CA is given, verifying the server against it; mTLS when a client
    certificate and key are given too."""
    import grpc

    if not environment.tls_ca:
        return grpc.insecure_channel(addr)
    cert, key = environment.tls_client_cert, environment.tls_client_key
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(environment.tls_ca).read_bytes(),
        private_key=Path(key).read_bytes() if key else None,
        certificate_chain=Path(cert).read_bytes() if cert else None,
    )
    return grpc.secure_channel(addr, credentials)


def fail(message: str, code: int = 1) -> NoReturn:
    """Ends the command with `error: <message>` on stderr and the given exit code."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@dataclass(frozen=True)
class ResolvedToken:
    """The admin token and where it came from, named when the server refuses it."""

    token: str = field(repr=False)
    source: str


def resolve_token(token: str | None, environment: ClientEnvironment) -> ResolvedToken:
    """The given token (--token, or TOLLWAY_ADMIN_TOKEN through the option), else the one the embedded
    server wrote to the data dir; exit 2 when neither. Reading the default data dir (relative to the
    current directory) is said on stderr: a token left there by an earlier `make run` belongs to that
    server, not necessarily to the one at --addr."""
    env_name = Settings.env_name("admin_token")
    if token:
        value = token.strip()
        return ResolvedToken(value, env_name if value == environment.env_token else "--token")
    # Embedded mode keeps the generated token in the data dir; reading it lets `tollway up` + CLI just work.
    path = environment.data_dir / "admin-token"
    try:
        stored = path.read_text().strip()
    except OSError:
        stored = ""
    if not stored:
        fail(f"no admin token: pass --token or set {env_name} (no token file at {path})", code=2)
    if environment.data_dir_chosen:
        return ResolvedToken(stored, f"{path} ({Settings.env_name('data_dir')})")
    shown = path.resolve()
    typer.echo(
        f"note: using the admin token in {shown} (the default data dir; set {env_name} or "
        f"{Settings.env_name('data_dir')} to choose)",
        err=True,
    )
    return ResolvedToken(stored, str(shown))


# --------------------------------------------------------------------------------------------------
# Calls and errors
# --------------------------------------------------------------------------------------------------

# Messages gRPC core uses when no connection could be made, as opposed to UNAVAILABLE from the server.
_CONNECT_FAILURES = (
    "failed to connect",
    "errors resolving",
    "dns resolution failed",
    "connection refused",
    "connections to all backends failing",
)


def describe_rpc_error(code: grpc.StatusCode, details: str, addr: str, connected: Callable[[], bool]) -> str:
    """`CODE: details`, prefixed with the address when the server was never reached (refused, unresolvable,
    or a deadline that ran out before a connection existed)."""
    import grpc

    status = f"{code.name}: {details}" if details else code.name
    unreachable = code == grpc.StatusCode.UNAVAILABLE and any(
        marker in details.lower() for marker in _CONNECT_FAILURES
    )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED and not connected():
        unreachable = True
    if unreachable:
        return f"cannot reach the admin server at {addr}: {status}"
    return status


class AdminClient(Generic[ServiceStub]):
    """One channel to the admin server and one service's stub; every call carries the bearer token."""

    def __init__(
        self,
        addr: str,
        token: str | ResolvedToken,
        stub_type: Callable[[grpc.Channel], ServiceStub],
        environment: ClientEnvironment,
        timeout: float = RPC_TIMEOUT_SECONDS,
    ) -> None:
        resolved = token if isinstance(token, ResolvedToken) else ResolvedToken(token, "--token")
        self.addr = addr
        self.timeout = timeout
        self.token_source = resolved.source
        self.metadata = (("authorization", f"Bearer {resolved.token}"),)
        self.channel = admin_channel(addr, environment)
        self.service = stub_type(self.channel)

    def close(self) -> None:
        self.channel.close()

    def call(self, rpc: Callable[..., Response], request: Message) -> Response:
        """One unary call; a gRPC error ends the command with exit code 1."""
        import grpc

        try:
            return rpc(request, timeout=self.timeout, metadata=self.metadata)
        except grpc.RpcError as exc:
            fail(self.describe(exc))

    def describe(self, exc: grpc.RpcError) -> str:
        import grpc

        code: grpc.StatusCode = exc.code()
        details: str = exc.details() or ""
        described = describe_rpc_error(code, details, self.addr, self._connected)
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            return f"{described} (admin token from {self.token_source})"
        return described

    def _connected(self) -> bool:
        import grpc

        try:
            grpc.channel_ready_future(self.channel).result(timeout=0.05)
        except grpc.FutureTimeoutError:
            return False
        return True


@contextmanager
def admin_client(
    addr: str,
    token: str | None,
    stub_type: Callable[[grpc.Channel], ServiceStub],
    environ: Mapping[str, str] | None = None,
) -> Iterator[AdminClient[ServiceStub]]:
    """A client for one admin service, closed on exit; the token falls back to the data dir's file."""
    from tollway.settings.loader import ConfigError

    try:
        environment = ClientEnvironment.from_environ(environ)
    except ConfigError as error:
        fail(str(error), code=2)
    client = AdminClient(addr, resolve_token(token, environment), stub_type, environment)
    try:
        yield client
    finally:
        client.close()


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------


# Earlier option spellings, accepted by every command that has the canonical one, shown by none.
LEGACY_OPTIONS = {"--sub": "--subscription", "--app": "--application"}
# ... and by one command only: `billing export` wrote its file with --output before --output meant the
# format everywhere (export's format is --format csv|jsonl; its file is --file).
LEGACY_COMMAND_OPTIONS = {("billing", "export"): {"--output": "--file"}}


def canonical_args(args: Sequence[str]) -> list[str]:
    """The command line with earlier option spellings replaced (`--sub X`, `--sub=X`); values after
    `--` are left alone."""
    legacy = dict(LEGACY_OPTIONS)
    for path, options in LEGACY_COMMAND_OPTIONS.items():
        if list(args[: len(path)]) == list(path):
            legacy.update(options)
    rewritten: list[str] = []
    for index, arg in enumerate(args):
        if arg == "--":
            return rewritten + list(args[index:])
        name, equals, value = arg.partition("=")
        canonical = legacy.get(name)
        rewritten.append(f"{canonical}{equals}{value}" if canonical else arg)
    return rewritten


def require_changes(mask: Sequence[str]) -> None:
    """An empty update mask would mean "replace every field", so an update with nothing to change is a
    usage error."""
    if not mask:
        raise typer.BadParameter("nothing to update: pass at least one option to change")


class TollwayGroup(TyperGroup):
    """The root `tollway` group (`typer.Typer(cls=TollwayGroup)`): accepts the legacy option spellings
    by rewriting them before any command parses its options."""

    def main(self, args: Sequence[str] | None = None, *more: Any, **kwargs: Any) -> Any:
        import sys

        given = list(args) if args is not None else sys.argv[1:]
        return super().main(canonical_args(given), *more, **kwargs)


# --------------------------------------------------------------------------------------------------
# Value parsers (pure; raise ValueError so they are testable without typer; `typer_parser` adapts them)
# --------------------------------------------------------------------------------------------------

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION_PART = re.compile(r"(\d+)([smhdw])")


def parse_duration(text: str) -> timedelta:
    """'30s', '15m', '1h', '30d', '2w' or compounds such as '1h30m'; a bare '0' means zero."""
    value = text.strip().lower()
    if value == "0":
        return timedelta(0)
    if not value or _DURATION_PART.sub("", value):
        raise ValueError(f"invalid duration {text!r}: use a number with a unit s, m, h, d or w, e.g. 30d")
    seconds = sum(int(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(value))
    return timedelta(seconds=seconds)


def parse_time(text: str) -> datetime:
    """ISO 8601 date or date-time ('Z' accepted), as an aware UTC datetime; naive values are UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"invalid time {text!r}: use ISO 8601, e.g. 2026-11-01T00:00:00Z") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def duration_proto(value: timedelta) -> Duration:
    proto = Duration()
    proto.FromTimedelta(value)
    return proto


def timestamp_proto(value: datetime) -> Timestamp:
    proto = Timestamp()
    proto.FromDatetime(value)
    return proto


def typer_parser(parse: Callable[[str], Parsed]) -> Callable[[str], Parsed]:
    """Turns a parser's ValueError into a usage error (exit code 2) with the parser's message; for
    `typer.Option(parser=...)`."""

    def parser(value: str | Parsed) -> Parsed:
        # Typer also calls the parser on values it already converted (defaults, repeated options).
        if not isinstance(value, str):
            return value
        try:
            return parse(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None

    return parser


duration_param = typer_parser(parse_duration)
time_param = typer_parser(parse_time)
