"""`vifwire cluster up/down/status`: several hosts, server workers, PostgreSQL and RabbitMQ.

The rig itself is `vifwire.cluster`; this module reads the options, renders the
configuration files the rig's processes read (in the CLI's own INI format,
`vifwire.cli.config`) and prints one line per fault.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vifwire.settings import Settings

if TYPE_CHECKING:
    from vifwire.cluster import RigState

app = typer.Typer(no_args_is_help=True, help="A distributed vifwire on this machine: "
                  "database, RabbitMQ, server workers and N simulated hosts.")


class Database(enum.StrEnum):
    postgresql = "postgresql"
    mariadb = "mariadb"


def render_config(values: dict[str, Any]) -> tuple[str, list[str]]:
    """INI text for Settings field values, through the CLI's key table; the fields
    it has no key for are returned, not written."""
    from vifwire.cli.config import KEYS

    where = {field: key for key, (field, _) in KEYS.items()}
    sections: dict[str, list[str]] = {}
    missing = []
    for field, value in values.items():
        if value is None or value == "":
            continue
        if field not in where:
            missing.append(field)
            continue
        section, key = where[field]
        sections.setdefault(section, []).append(f"{key} = {value}")
    text = "".join(f"[{section}]\n" + "\n".join(lines) + "\n\n"
                   for section, lines in sections.items())
    return "# written by `vifwire cluster up`\n" + text, missing


@app.command()
def up(
    ctx: typer.Context,
    hosts: Annotated[int, typer.Option(min=1, max=200, help="Simulated hosts (agents).")] = 4,
    workers: Annotated[int, typer.Option(min=1, help="Server worker processes.")] = 4,
    database: Annotated[Database, typer.Option(
        help="Which private database to start (ignored with --database-url).")]
    = Database.postgresql,
    database_url: Annotated[str, typer.Option(
        help="Use this existing database instead of a private one.")] = "",
    bus_url: Annotated[str, typer.Option(
        help="Use this existing RabbitMQ (amqp://...) instead of a private node.")] = "",
    api_port: Annotated[int | None, typer.Option(help="The server's port (default: the "
                                                      "global --api-port, 9696).")] = None,
    heartbeat: Annotated[float, typer.Option(help="Agents' report interval, seconds.")] = 2.0,
) -> None:
    """Start database, RabbitMQ, server workers and an agent per host; wait for them all."""
    from vifwire.cli.main import _errors, console, require_root
    from vifwire.cluster.rig import RigOptions
    from vifwire.cluster.rig import up as rig_up

    settings: Settings = ctx.obj
    require_root()
    options = RigOptions(
        run_dir=settings.run_dir, hosts=hosts, render_config=render_config,
        database=database.value, database_url=database_url or settings.database_url,
        bus_url=bus_url or (settings.bus_url if settings.bus_url != "local" else ""),
        workers=workers, api_port=api_port or settings.api_port, heartbeat_s=heartbeat)
    with _errors():
        state = rig_up(options)
    console.print(f"cluster {state.id} is up: API {state.api_url}, {len(state.hosts)} hosts, "
                  f"{state.workers} workers, state {state.path}", highlight=False)
    for note in dict.fromkeys(state.notes):
        console.print(f"note: {note}", highlight=False)


def _state(settings: Settings, cluster: Path | None) -> RigState:
    from vifwire.cluster.state import ClusterError, find

    state = find(settings.run_dir, cluster)
    if state is None:  # (called inside _errors: one line, exit 1)
        raise ClusterError(f"no cluster in {settings.run_dir} (start one with "
                           "`vifwire cluster up`)")
    return state


ClusterOption = Annotated[Path | None, typer.Option(
    "--cluster", help="The rig's state file or directory (default: the run dir's rig).")]


@app.command()
def down(ctx: typer.Context, cluster: ClusterOption = None) -> None:
    """Stop exactly what `cluster up` started (by recorded pid and name) and remove it."""
    from vifwire.cli.main import _errors, console, fail
    from vifwire.cluster.rig import down as rig_down

    with _errors():
        state = _state(ctx.obj, cluster)
        left = remove_kept_vms(state)
        left += rig_down(state)
    if left:
        fail(f"cluster {state.id} is partly down; left: {', '.join(left)}")
    console.print(f"cluster {state.id} is down", highlight=False)


def remove_kept_vms(state: RigState) -> list[str]:
    """The namespaces of VMs `vifwire boot --keep` left on the rig, by the names its
    run state files recorded (their host ends go with the hosts' namespaces)."""
    from vifwire.compute.errors import ComputeError
    from vifwire.compute.state import load_states
    from vifwire.compute.vm import delete_sync

    left: list[str] = []
    if not state.server_run_dir:
        return left
    for run in load_states(Path(state.server_run_dir)):
        for namespace in run.namespaces:
            try:
                delete_sync(namespace, None)
            except ComputeError as exc:
                left.append(f"VM namespace {namespace} ({exc})")
    return left


@app.command()
def status(ctx: typer.Context, cluster: ClusterOption = None) -> None:
    """Each component and each host's agent with its last heartbeat (exit 3 if any is down)."""
    from vifwire.cli.main import _errors
    from vifwire.cluster.rig import status as rig_status

    with _errors():
        state = _state(ctx.obj, cluster)
        rows, ok = rig_status(state)
    print(f"cluster {state.id} ({state.status}): {state.path}")
    width = max(len(name) for name, _ in rows) if rows else 0
    for name, text in rows:
        print(f"{name:<{width}}  {text}")
    raise typer.Exit(0 if ok else 3)


@app.command()
def restart(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="postgresql, mariadb or rabbitmq")],
    cluster: ClusterOption = None,
) -> None:
    """Stop a private service of the cluster and start it again on the same port and data."""
    from vifwire.cli.main import _errors, console
    from vifwire.cluster.rig import restart as rig_restart

    with _errors():
        state = _state(ctx.obj, cluster)
        rig_restart(state, service)
    console.print(f"{service} of cluster {state.id} restarted", highlight=False)
