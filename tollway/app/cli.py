"""The `tollway` command: `serve` runs the services, `up` runs them with Envoy, the rest are admin RPCs."""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from keymgr.keys import parse_key
from tollway.app.registry import COMPONENTS
from tollway.cli_support import TollwayGroup
from tollway.logs import configure_logging
from tollway.settings import Settings
from tollway.settings.cli import register as register_config_commands
from tollway.settings.cli import use_config_file

# asyncio, the runner and everything a server needs are imported by `serve` and `up` only: the admin
# commands start in well under 0.3 s (README, "Administration").
if TYPE_CHECKING:
    from collections.abc import Coroutine

    from tollway.app.runner import TollwayProcess


class TollwayTyper(typer.Typer):
    """The `tollway` app. Run as a command, it hands click only the command group the command line
    names (`tollway plan list` builds the plan commands, not all eighty): typer turns every command's
    signature into click parameters before parsing, which was a third of the CLI's start-up. With no
    command, an unknown one, or a completion request, every command is built."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        wanted = _command_name(sys.argv[1:])
        if wanted is None:
            return super().__call__(*args, **kwargs)
        pruned = copy.copy(self)
        pruned.registered_groups = [group for group in self.registered_groups if group.name == wanted]
        pruned.registered_commands = [
            command for command in self.registered_commands if _name_of(command) == wanted
        ]
        if not pruned.registered_groups and not pruned.registered_commands:
            return super().__call__(*args, **kwargs)  # a typo: the full app suggests the nearest
        return typer.Typer.__call__(pruned, *args, **kwargs)


def _name_of(command: Any) -> str:
    return str(command.name or command.callback.__name__.replace("_", "-"))


def _command_name(argv: list[str]) -> str | None:
    """The first word of the command line that is not a root option (`--config PATH`)."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--config":
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


app = TollwayTyper(
    cls=TollwayGroup,
    help="Tollway: keys, plans, quotas, usage and invoices for APIs behind Envoy.",
    no_args_is_help=True,
)
for component in COMPONENTS:
    component.register_cli(app)
register_config_commands(app)


CONFIG_OPTION = typer.Option(
    None,
    "--config",
    help="The config file (tollway.toml) for settings the environment does not set [env: TOLLWAY_CONFIG].",
    dir_okay=False,
    show_default=False,
)


@app.callback()
def main(config: Path | None = CONFIG_OPTION) -> None:
    """Tollway: keys, plans, quotas, usage and invoices for APIs behind Envoy. Exit codes: 0 ok, 1
    refused by the server (its gRPC status on stderr), 2 usage error."""
    use_config_file(config)


async def _run_until_signal() -> None:
    import asyncio
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _run(main: Coroutine[Any, Any, None]) -> None:
    """Runs a process to its end (tollway/event_loop.py: uvloop when installed); a refused setup ends
    with its message, not a traceback."""
    from tollway import event_loop
    from tollway.refusal import StartupRefused

    try:
        event_loop.run(main)
    except StartupRefused as refused:
        typer.echo(f"error: {refused}", err=True)
        raise typer.Exit(2) from None


WORKERS_OPTION = typer.Option(
    None,
    "--workers",
    min=1,
    help="OS processes serving the Envoy-facing services, each its own endpoint in Envoy's clusters "
    "[default: TOLLWAY_WORKERS or 1].",
    show_default=False,
)


def _settings(workers: int | None) -> Settings:
    """The server's settings; --workers before resolving (the default endpoints name every worker). A
    setting that cannot be used ends the command with its file and key (or variable), exit code 2."""
    from tollway.settings.loader import ConfigError

    try:
        settings = Settings.read_env()
    except ConfigError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    if workers is not None:
        settings = replace(settings, workers=workers)
    return settings.resolved()


@app.command()
def serve(workers: int | None = WORKERS_OPTION) -> None:
    """Run Tollway's gRPC services (Envoy-facing and admin), configured from TOLLWAY_* and --config."""
    settings = _settings(workers)
    configure_logging(settings)

    async def main() -> None:
        from tollway.app.workers import WorkerGroup

        group = WorkerGroup(settings)
        await group.start()
        try:
            await _run_until_signal()
        finally:
            await group.stop()

    _run(main())


def _wait_for_status(url: str, status: int, timeout: float) -> bool:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == status:
                    return True
        except urllib.error.HTTPError as error:
            if error.code == status:
                return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    return False


async def _wait_for_key(process: TollwayProcess, key: str, timeout: float) -> bool:
    """The demo key is live once the gateway's key index holds it (checked in-process, so that the
    readiness probe spends none of the demo plan's per-minute allowance)."""
    import asyncio

    from keymgr.process import Keymgr

    parsed = parse_key(key)
    keymgr = process.find(Keymgr)
    deadline = time.monotonic() + timeout
    while parsed is not None and keymgr is not None and time.monotonic() < deadline:
        if parsed.key_id in keymgr.index.snapshot.keys:
            return True
        await asyncio.sleep(0.05)
    return False


@app.command()
def up(
    demo: bool = typer.Option(False, "--demo", help="Serve a demo API and issue a demo key."),
    demo_upstream: str | None = typer.Option(
        None,
        help="Where the demo API's upstream listens [default: TOLLWAY_DEMO_UPSTREAM_ADDR or 127.0.0.1:8090].",
        show_default=False,
    ),
    workers: int | None = WORKERS_OPTION,
) -> None:
    """Run the services together with Envoy (bootstrap generated, pointing at ADS); Ctrl-C stops all."""
    settings = _settings(workers)
    upstream = demo_upstream or settings.demo_upstream_addr
    configure_logging(settings)

    import asyncio

    async def main() -> None:
        from tollway.app.banner import address_lines
        from tollway.app.launcher import gateway_envoy
        from tollway.app.workers import WorkerGroup
        from tollway.envoy import EnvoyProcess

        group = WorkerGroup(settings)
        await group.start()
        process = group.main
        echo_server = None
        envoy: EnvoyProcess | None = None
        try:
            credentials = None
            if demo:
                from tollway.app.demo import DEMO_REQUESTS_PER_MINUTE, seed, start_echo_server

                host, _, port = upstream.rpartition(":")
                echo_server = start_echo_server(host, int(port))
                credentials = await seed(process, f"http://{upstream}")

            envoy = gateway_envoy(settings)
            # Started from the event loop thread: Envoy is tied to this thread's life (PR_SET_PDEATHSIG).
            envoy.start()
            await asyncio.to_thread(envoy.wait_ready, 30.0)
            gateway = f"http{'s' if settings.gateway_tls_cert_file else ''}://{settings.gateway_addr}"
            print("", flush=True)
            print("Tollway is up.", flush=True)
            for line in address_lines(settings, group.addresses, str(envoy.log_path)):
                print(line, flush=True)
            if credentials is not None:
                url = f"{gateway}{credentials.api_path}/hello"
                # Without a key the route answers 401 once Envoy has it and keymgr is answering.
                routed = await asyncio.to_thread(_wait_for_status, url, 401, 15.0)
                ready = routed and await _wait_for_key(process, credentials.key, 5.0)
                if not ready:
                    print("warning: the demo route did not answer 200 yet; see the Envoy log", flush=True)
                print("", flush=True)
                print("Call the demo API through Envoy with the demo key (shown once):", flush=True)
                print(f"curl -s -H 'x-api-key: {credentials.key}' {url}", flush=True)
                print(
                    "Without a key, or with a wrong one, Envoy answers 401 with a problem+json body.",
                    flush=True,
                )
                print(
                    f"The demo plan allows {DEMO_REQUESTS_PER_MINUTE} requests per minute: repeat the curl "
                    f"and the {DEMO_REQUESTS_PER_MINUTE + 1}th call within a minute gets 429 "
                    "(Retry-After, X-RateLimit-* headers, problem+json).",
                    flush=True,
                )
            portal_url = settings.portal_url if "portal" in settings.components else ""
            if portal_url:
                print("", flush=True)
                print(
                    f"Developer portal (web): {portal_url}  consumer gRPC API: {settings.portal_grpc_addr}",
                    flush=True,
                )
                print(f"TOLLWAY_PORTAL_URL={portal_url}", flush=True)
            if credentials is not None and credentials.portal_password:
                print("Sign in to the portal as the demo consumer (a new password each run):", flush=True)
                print(f"  email:    {credentials.portal_email}", flush=True)
                print(f"  password: {credentials.portal_password}", flush=True)
                print(
                    f"Publishers sign in at {portal_url}/publisher/sign-in with the admin token below.",
                    flush=True,
                )
            print("", flush=True)
            print("Admin credential for grpcurl and the CLI:", flush=True)
            print(f"TOLLWAY_ADMIN_ADDR={settings.admin_addr}", flush=True)
            print(f"TOLLWAY_ADMIN_TOKEN={settings.admin_token}", flush=True)
            print("Press Ctrl-C to stop.", flush=True)
            await _run_until_signal()
        finally:
            if envoy is not None:
                await asyncio.to_thread(envoy.stop)
            if echo_server is not None:
                echo_server.shutdown()
            await group.stop()

    _run(main())


if __name__ == "__main__":
    app()
