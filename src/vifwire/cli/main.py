"""`vifwire`: run the embedded stack and boot storms against it or any Neutron.

Settings are built once here, from options and VIFWIRE_* environment variables,
and passed down; errors the user can act on become one red line and exit 1.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from vifwire.cli import daemon
from vifwire.settings import Settings

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Neutron-compatible networking that wires a booting VM's port in ms.")
console = Console(stderr=True)

RunDir = Annotated[Path | None, typer.Option("--run-dir", envvar="VIFWIRE_RUN_DIR",
                                             help="Where OVS, sockets and logs live. "
                                                  "(default /var/run/vifwire)")]


@app.callback()
def main(
    ctx: typer.Context,
    config_file: Annotated[Path | None, typer.Option(
        envvar="VIFWIRE_CONFIG_FILE",
        help="INI configuration file (default /etc/vifwire/vifwire.conf, if present); "
             "the environment and flags override it.")] = None,
    run_dir: RunDir = None,
    state_dir: Annotated[Path | None, typer.Option(
        envvar="VIFWIRE_STATE_DIR",
        help="Where the embedded database lives (it must survive reboots). "
             "Default: /var/lib/vifwire, or the run dir when another --run-dir is given.")]
    = None,
    host: Annotated[str | None, typer.Option(envvar="VIFWIRE_HOST",
                                             help="This compute host's name.")] = None,
    api_host: Annotated[str | None, typer.Option(
        envvar="VIFWIRE_API_HOST", help="Address the API listens on. (default 127.0.0.1)")]
    = None,
    api_port: Annotated[int | None, typer.Option(
        envvar="VIFWIRE_API_PORT", help="Port the API listens on (default 9696).")] = None,
    nova_url: Annotated[str | None, typer.Option(
        envvar="VIFWIRE_NOVA_URL",
        help="Nova API base for external events. (default http://127.0.0.1:8774/v2.1)")]
    = None,
    database_url: Annotated[str | None, typer.Option(
        envvar="VIFWIRE_DATABASE_URL", help="SQLAlchemy URL; default SQLite in the state dir.")]
    = None,
    bus_url: Annotated[str | None, typer.Option(
        envvar="VIFWIRE_BUS_URL", help="'local' (in-process) or amqp://user:pass@host:5672/ "
                                       "(default local)")] = None,
    bus_prefix: Annotated[str | None, typer.Option(
        envvar="VIFWIRE_BUS_PREFIX", help="RabbitMQ queue-name prefix, so several clusters "
                                          "share one broker. (default vifwire)")] = None,
    trace_dir: Annotated[Path | None, typer.Option(envvar="VIFWIRE_TRACE_DIR")] = None,
    cprofile_dir: Annotated[Path | None, typer.Option(hidden=True)] = None,
    ovs_netns: Annotated[str | None, typer.Option(
        envvar="VIFWIRE_OVS_NETNS", help="Run this host's OVS in a network namespace.")] = None,
    auth_strategy: Annotated[str | None, typer.Option(
        envvar="VIFWIRE_AUTH_STRATEGY",
        help="noauth (every request is admin; loopback only) or keystone (tokens checked "
             "against [keystone_authtoken]). (default noauth)")] = None,
    policy_file: Annotated[Path | None, typer.Option(
        envvar="VIFWIRE_POLICY_FILE", help="YAML/JSON policy rules overriding "
                                           "Neutron's defaults.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    from vifwire.cli.config import ConfigError, read_config

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:
        # Libraries log what we already report as one clear line.
        for noisy in ("ovsdbapp", "ovs", "pyroute2", "httpx", "aiormq", "aio_pika"):
            logging.getLogger(noisy).setLevel(logging.CRITICAL)
    try:
        values = read_config(config_file)
    except ConfigError as exc:
        fail(str(exc))
    if config_file is not None:
        # What this process spawns (the stack of `up`) reads the same file.
        os.environ["VIFWIRE_CONFIG_FILE"] = str(config_file.resolve())
    flags = {"run_dir": run_dir, "state_dir": state_dir, "host": host, "api_host": api_host,
             "api_port": api_port, "nova_url": nova_url and nova_url.rstrip("/"),
             "database_url": database_url, "bus_url": bus_url, "bus_prefix": bus_prefix,
             "trace_dir": trace_dir,
             "cprofile_dir": cprofile_dir, "ovs_netns": ovs_netns,
             "auth_strategy": auth_strategy, "policy_file": policy_file}
    # Precedence: flag, then environment (click reads both into the flag), then file.
    values.update({name: value for name, value in flags.items() if value not in (None, "")})
    ctx.obj = Settings(**values)


def fail(message: str) -> None:
    # Escaped: a message may quote user input (a URL, a name) that looks like markup.
    console.print(f"[bold red]error:[/] {escape(' '.join(message.split()))}", highlight=False,
                  soft_wrap=True)
    raise typer.Exit(1)


def _ip_address(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an IP address") from None


def require_root() -> None:
    if os.geteuid() != 0:
        fail("vifwire needs root to run Open vSwitch and network namespaces (try sudo)")


@app.command()
def stack(ctx: typer.Context) -> None:
    """Run the API server and this host's agent in the foreground (what `up` starts)."""
    from vifwire.profile.cprof import profiled
    from vifwire.stack import run_forever

    settings: Settings = ctx.obj
    logging.getLogger().setLevel(logging.INFO)
    with _errors(), profiled("stack", settings.cprofile_dir):
        private_files(settings)
        run_forever(settings)


@app.command()
def server(
    ctx: typer.Context,
    workers: Annotated[int | None, typer.Option(
        min=1, envvar="VIFWIRE_API_WORKERS",
        help="API worker processes. Default: one per core (1 on the local bus).")] = None,
) -> None:
    """Run the API server alone, in worker processes sharing the database and the bus."""
    from vifwire.distributed import run_server

    settings: Settings = ctx.obj
    if workers is not None:
        settings = settings.with_(api_workers=workers)
    with _errors():
        private_files(settings)
        raise typer.Exit(run_server(settings))


@app.command()
def agent(
    ctx: typer.Context,
    metrics_port: Annotated[int | None, typer.Option(
        min=1, max=65535, envvar="VIFWIRE_AGENT_METRICS_PORT",
        help="Serve GET /metrics on 127.0.0.1:PORT.")] = None,
    local_ip: Annotated[str | None, typer.Option(
        envvar="VIFWIRE_LOCAL_IP", callback=_ip_address,
        help="This host's tunnel (VXLAN) address, Neutron's [ovs] local_ip.")] = None,
) -> None:
    """Run this host's Open vSwitch agent (--host NAME) on the bus until SIGTERM."""
    from vifwire.distributed import run_agent

    settings: Settings = ctx.obj
    if metrics_port is not None:
        settings = settings.with_(agent_metrics_port=metrics_port)
    if local_ip is not None:
        settings = settings.with_(local_ip=local_ip)
    require_root()
    with _errors():
        private_files(settings)
        run_agent(settings)


db_app = typer.Typer(no_args_is_help=True, help="The database schema.")
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Upgrade the database schema to this vifwire's (Alembic head)."""
    from vifwire.stack import upgrade_database

    settings: Settings = ctx.obj
    with _errors():
        private_files(settings)
        revision = upgrade_database(settings.effective_database_url)
    print(f"database schema is at {revision}")


@app.command()
def up(ctx: typer.Context) -> None:
    """Start Open vSwitch and the embedded stack (SQLite + in-process bus) in the background."""
    from vifwire.stack import check_settings

    settings: Settings = ctx.obj
    require_root()
    with _errors():
        private_files(settings)
        check_settings(settings)  # before OVS starts: the stack would refuse it
        _start_ovs(settings)
        pid = daemon.start(settings)
    console.print(f"vifwire is up: API {settings.api_url}, host {settings.host}, pid {pid}, "
                  f"run dir {settings.run_dir}", highlight=False)


@app.command()
def down(ctx: typer.Context) -> None:
    """Stop the embedded stack and its Open vSwitch (ports stay in the database)."""
    from vifwire.ovs.runtime import host_runtime

    settings: Settings = ctx.obj
    with _errors():
        stopped = daemon.stop(settings)
        host_runtime(settings).stop()
        kept = _vm_links(settings.ovs_netns) if settings.ovs_netns else []
        if settings.ovs_netns and not kept:
            subprocess.run(["ip", "netns", "del", settings.ovs_netns], capture_output=True,
                           check=False)
    console.print("vifwire is down" if stopped else "vifwire was not running")
    if kept:
        # The namespace is this simulated host's network: deleting it would unplug
        # the kept VMs (their veths' host ends live in it), as pulling a real
        # host's cables would. It goes with the last of them.
        console.print(f"namespace {settings.ovs_netns} kept: it holds {len(kept)} kept "
                      f"VM interface(s)", highlight=False)


def _vm_links(netns: str) -> list[str]:
    """The VMs' host-side veths (tap<port id>) in `netns`."""
    done = subprocess.run(["ip", "-n", netns, "-o", "link", "show"], capture_output=True,
                          text=True, check=False)
    names = [line.split(":")[1].strip().split("@")[0]
             for line in done.stdout.splitlines() if line.count(":") >= 2]
    return [name for name in names if name.startswith("tap")]


@app.command()
def status(ctx: typer.Context) -> None:
    """Show OVS, the stack, the API, and every host's agent with its last heartbeat."""
    from vifwire.ovs.runtime import host_runtime

    settings: Settings = ctx.obj
    pid = daemon.stack_pid(settings)
    print(f"ovs:   {'running' if host_runtime(settings).running() else 'stopped'}")
    print(f"stack: {f'running (pid {pid})' if pid else 'stopped'} {settings.api_url}")
    listed_agents = daemon.agents(settings)
    print(f"api:   {'answering' if listed_agents is not None else 'not answering'} at "
          f"{settings.api_url}")
    agents = listed_agents or []
    here = [a for a in agents if a.get("host") == settings.host]
    print(f"agent: {'alive' if any(a.get('alive') for a in here) else 'not alive'} "
          f"on host {settings.host}")
    for listed in sorted(agents, key=lambda a: str(a.get("host"))):
        print(f"  {listed.get('host')}: {'alive' if listed.get('alive') else 'DOWN'}, "
              f"last heartbeat {listed.get('heartbeat_timestamp') or 'never'}")
    raise typer.Exit(0 if pid or listed_agents is not None else 3)


def private_files(settings: Settings) -> None:
    from vifwire.stack import private_files as tighten

    tighten(settings)


def _start_ovs(settings: Settings) -> None:
    from vifwire.ovs.runtime import host_runtime

    host_runtime(settings).start()


class _errors:
    """Turn the project's own errors into one clear line and exit status 1."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        if exc is None or isinstance(exc, typer.Exit | KeyboardInterrupt | SystemExit):
            return
        if isinstance(exc, _user_errors()):
            fail(str(exc))


def _user_errors() -> tuple[type[BaseException], ...]:
    import httpx

    from vifwire.bus import BusError
    from vifwire.ovs.runtime import OvsError
    from vifwire.stack import StartupError

    errors: list[type[BaseException]] = [daemon.StackError, StartupError, OvsError, BusError,
                                         httpx.HTTPError, OSError]
    for module, name in (("vifwire.compute", "ComputeError"), ("vifwire.agent", "AgentError"),
                         ("vifwire.profile.sampler_process", "SamplerError"),
                         ("vifwire.cluster", "ClusterError")):
        errors.extend(_optional_error(module, name))
    return tuple(errors)


def _optional_error(module: str, name: str) -> list[type[BaseException]]:
    try:
        return [getattr(__import__(module, fromlist=[name]), name)]
    except (ImportError, AttributeError):
        return []



@app.command()
def boot(
    ctx: typer.Context,
    count: Annotated[int, typer.Option(min=1, max=1000, help="VMs to boot at once.")] = 8,
    network: Annotated[str, typer.Option(help="Network name to boot on.")] = "private",
    target: Annotated[str | None, typer.Option(help="Any Neutron-API URL; default: embedded.")]
    = None,
    token: Annotated[str | None, typer.Option(envvar="OS_TOKEN", help="X-Auth-Token.")] = None,
    keep: Annotated[bool, typer.Option(help="Keep the VMs after the run.")] = False,
    timeout: Annotated[float, typer.Option(help="vif_plugging_timeout, seconds.")] = 300.0,
    connectivity: Annotated[bool, typer.Option(help="Prove the wiring with ping.")] = True,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
    profile: Annotated[Path | None, typer.Option(
        help="Record where every millisecond went into this directory (report.html, "
             "profile.json).")] = None,
    cprofile: Annotated[bool, typer.Option(help="With --profile: also cProfile each "
                                                "component (.pstats files).")] = False,
    boot_host: Annotated[str | None, typer.Option(
        "--host", help="Boot every VM on this host (default: spread over the cluster's "
                       "hosts).")] = None,
    cluster: Annotated[Path | None, typer.Option(
        help="A `vifwire cluster` state file or dir (default: the run dir's cluster).")] = None,
    port_security: Annotated[bool, typer.Option(
        "--port-security", help="On a network with port security, every VM in the default "
                                "group; also prove a VM of another group is refused.")] = False,
    max_concurrent_builds: Annotated[int, typer.Option(
        min=0, help="At most this many VMs in build at once per host, as Nova's "
                    "max_concurrent_builds (its default: 10); 0: all at once.")] = 0,
) -> None:
    """Boot COUNT VMs at once: ports bound, VIFs plugged, vif-plugged awaited, traffic proven."""
    import orjson

    from vifwire.cli.boot import BootOptions, print_summary, run_boot

    settings: Settings = ctx.obj
    require_root()
    options = BootOptions(count=count, network=network, target=target, token=token, keep=keep,
                          timeout=timeout, check_connectivity=connectivity,
                          show_progress=not json_output and sys.stderr.isatty(),
                          profile_dir=profile, cprofile=cprofile, host=boot_host,
                          cluster=cluster, port_security=True if port_security else None,
                          max_concurrent_builds=max_concurrent_builds)
    if cprofile and profile is None:
        fail("--cprofile needs --profile DIR")
    with _errors():
        summary = run_boot(settings, options, console)
    if json_output:
        sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print_summary(summary, network, Console())
        if profile is not None:
            _print_profile(profile)
    raise typer.Exit(0 if summary.get("ok") else 2)


@app.command()
def report(
    directory: Annotated[Path, typer.Argument(help="A directory written by boot --profile.")],
    json_output: Annotated[bool, typer.Option("--json", help="Print profile.json.")] = False,
) -> None:
    """Re-render a saved profile: terminal summary, profile.json and report.html."""
    from vifwire.profile.report import render

    if not directory.is_dir():
        fail(f"{directory} is not a directory written by `vifwire boot --profile`")
    with _errors():
        profile_path, _ = render(directory)
    if json_output:
        sys.stdout.write(profile_path.read_text())
    else:
        _print_profile(directory)


def _print_profile(directory: Path) -> None:
    import orjson

    from vifwire.profile.report import PROFILE_FILE, REPORT_FILE
    from vifwire.profile.summary import print_summary

    print_summary(orjson.loads((directory / PROFILE_FILE).read_bytes()), Console())
    Console().print(f"report: {directory / REPORT_FILE}  data: {directory / PROFILE_FILE}",
                    highlight=False)


from vifwire.cli.cluster import app as cluster_app  # noqa: E402  (after the commands it uses)

app.add_typer(cluster_app, name="cluster")

if __name__ == "__main__":
    sys.exit(app())
