"""One frozen settings object, built at the CLI edge and passed down.

Nothing reads configuration at import time (no environment, no file): the CLI
merges the configuration file (`vifwire.cli.config`), the VIFWIRE_* environment
and its flags into one `Settings`, and every component takes the pieces it
needs from the `Settings` handed to it.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field, replace
from pathlib import Path

STANDARD_RUN_DIR = Path("/var/run/vifwire")
DEFAULT_RUN_DIR = STANDARD_RUN_DIR
# The embedded database must outlive a reboot, and /var/run is a tmpfs on Debian.
DEFAULT_STATE_DIR = Path("/var/lib/vifwire")
DATABASE_FILE = "vifwire.sqlite"
# The resources a project's quota limits, as Neutron names them.
QUOTA_RESOURCES = ("network", "subnet", "subnetpool", "port", "security_group",
                   "security_group_rule")


# In the run dir: the embedded stack's pid, written once it serves and removed when
# it stops (what `vifwire up` waits for where the API wants a token).
STACK_READY_FILE = "stack.ready"

@dataclass(frozen=True)
class OvsSettings:
    """Where the private Open vSwitch of one host lives."""

    run_dir: Path
    integration_bridge: str = "br-int"
    # Neutron's [ovs] tunnel_bridge: VXLAN tunnels and their flows (used with local_ip).
    tunnel_bridge: str = "br-tun"
    datapath_type: str = "netdev"
    # Read OVSDB rows from python-ovs's private Row._data (off: the public row
    # attributes). Bridge.ports as raw UUIDs: bench/agent_ab.py, 0.25 vs 11 ms per
    # add-port at 1,000 ports; each VIF's columns: bench/agent_restart.py. See
    # vifwire.ovs.vifs.
    raw_rows: bool = True

    @property
    def db_socket(self) -> Path:
        return self.run_dir / "db.sock"

    @property
    def connection(self) -> str:
        return f"unix:{self.db_socket}"


@dataclass(frozen=True)
class KeystoneCredentials:
    """A service user's password credentials, as keystoneauth1's `password` plugin takes
    them (Neutron's [keystone_authtoken] and [nova] sections)."""

    auth_url: str
    username: str
    password: str
    project_name: str = "service"
    user_domain_name: str = "Default"
    project_domain_name: str = "Default"


AUTH_STRATEGIES = ("noauth", "keystone")


@dataclass(frozen=True)
class Settings:
    run_dir: Path = DEFAULT_RUN_DIR
    host: str = field(default_factory=socket.gethostname)
    # SQLAlchemy URL; the embedded default is a SQLite file in the state dir.
    database_url: str = ""
    # Where what must outlive a reboot (the embedded database) lives. Unset: the
    # standard run dir keeps its state in DEFAULT_STATE_DIR, and any other run dir
    # (tests, benches, a second stack) keeps everything in itself.
    state_dir: Path | None = None
    # "local" (in-process) or an amqp:// URL for RabbitMQ.
    bus_url: str = "local"
    # RabbitMQ queue names start with it: several clusters (or tests) share a broker.
    bus_prefix: str = "vifwire"
    api_host: str = "127.0.0.1"
    api_port: int = 9696
    # Nova's compute API base; the notifier posts to {nova_url}/os-server-external-events.
    nova_url: str = "http://127.0.0.1:8774/v2.1"
    agent_heartbeat_s: float = 5.0
    # Neutron's default agent_down_time.
    agent_down_time_s: float = 75.0
    # How long the server gathers port changes before it sends a group's new member
    # list (vifwire.server.firewalls): each list makes every agent rewrite the member
    # flows of every port naming the group, so a storm should send few.
    sg_members_delay_s: float = 0.05
    # While changes keep coming (a storm), each further round waits twice as long
    # as the one before, up to this: a 100-VM storm on PostgreSQL had sent about one
    # list per VM (every bind there asks for a round), each a read of the whole
    # group, and a cast of it to every host. Each worker runs its own rounds: at
    # 0.4 s, 4 workers sent 3.5 casts per VM in a 1,000-VM storm over 4 hosts
    # (bench/dist_counts.py --hosts 4), most of them read by no agent
    # (`sg_members_read_interval_s`).
    sg_members_max_delay_s: float = 1.0
    # An agent reads a group's member list at most this often in a storm (its gap
    # between reads starts at sg_members_delay_s and doubles up to this:
    # vifwire.agent.service `on_members_changed`): with N server workers each
    # sending rounds, the reads, each of the whole group, were what rounds cost.
    sg_members_read_interval_s: float = 1.0
    default_network_type: str = "vxlan"
    vxlan_vni_range: tuple[int, int] = (1, 16_000_000)
    vlan_range: tuple[int, int] = (1, 4094)
    physical_network: str = "physnet1"
    global_physnet_mtu: int = 1500
    # Neutron's [ml2] path_mtu (0: unset) and overlay_ip_version: a tunnel network's
    # MTU is min(global_physnet_mtu, path_mtu) less its headers (vifwire.server.mtu).
    path_mtu: int = 0
    overlay_ip_version: int = 4
    # Neutron's [ovs] local_ip: this host's tunnel (VXLAN) address. Unset: one host,
    # no tunnel bridge; set: br-tun with l2population (vifwire.agent.overlay).
    local_ip: str | None = None
    # When set, components append structured timing events to this directory.
    trace_dir: Path | None = None
    # Run this host's Open vSwitch (and its VMs' host-side veths) inside a network
    # namespace: a simulated host, so several stacks never share netdev tap names.
    ovs_netns: str | None = None
    # When set, the stack runs under cProfile and dumps <dir>/stack.pstats at exit.
    cprofile_dir: Path | None = None
    # `vifwire server`: API worker processes; None: the number of cores (1 on the
    # local bus, which cannot reach another process).
    api_workers: int | None = None
    # `vifwire agent`: serve GET /metrics on this port (127.0.0.1); None: no metrics.
    agent_metrics_port: int | None = None
    # Database speed-ups on SQLAlchemy internals, each with a plain fallback
    # (vifwire.db.fast, vifwire.server._db; bench/db_ab.py measures them).
    db_direct_statements: bool = True
    db_held_connections: bool = True
    # Threads running database transactions off the event loop (0: on the loop).
    db_threads: int = 4
    # Speed-up switches (issue 13.2; gains in bench/http_ab.py). Off: the plain path.
    fast_dispatch: bool = True  # api/dispatch; off: FastAPI routes every request
    nova_client: str = "httptools"  # server/nova_client; "httpx": httpx.AsyncClient
    # Neutron's [DEFAULT] auth_strategy: "noauth" (every request is admin, X-Project-Id
    # names its project; the API listens on loopback only) or "keystone" (a token is
    # validated against [keystone_authtoken]'s Keystone; vifwire.keystone).
    auth_strategy: str = "noauth"
    keystone_authtoken: KeystoneCredentials | None = None
    # Seconds a validated token is trusted without asking Keystone again
    # (keystonemiddleware's token_cache_time).
    token_cache_time_s: float = 300.0
    # oslo.policy-style YAML or JSON overriding the default rules (vifwire.server.policy).
    policy_file: Path | None = None
    # Host header names accepted when the API listens on loopback (besides localhost,
    # the loopback addresses and api_host): a browser page of another name that
    # resolves to 127.0.0.1 (DNS rebinding) is refused.
    api_allowed_hosts: tuple[str, ...] = ()
    # Neutron's [nova] service user: with it the notifier sends a Keystone token.
    nova_auth: KeystoneCredentials | None = None
    # Neutron's [quotas] quota_<resource> defaults: a project's limit unless set
    # through /v2.0/quotas; -1 is unlimited (vifwire.server.quotas).
    quota_network: int = 100
    quota_subnet: int = 100
    quota_subnetpool: int = -1
    quota_port: int = 500
    quota_security_group: int = 10
    quota_security_group_rule: int = 100

    @property
    def ovs(self) -> OvsSettings:
        return OvsSettings(run_dir=self.run_dir / "ovs")

    @property
    def effective_state_dir(self) -> Path:
        if self.state_dir is not None:
            return self.state_dir
        # Resolved: /var/run is /run on Debian, and systemd hands out /run/vifwire.
        standard = self.run_dir.resolve() == STANDARD_RUN_DIR.resolve()
        return DEFAULT_STATE_DIR if standard else self.run_dir

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.effective_state_dir / DATABASE_FILE}"

    @property
    def quota_defaults(self) -> dict[str, int]:
        """Resource -> default limit, for every resource with a quota."""
        return {name: getattr(self, f"quota_{name}") for name in QUOTA_RESOURCES}

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]
