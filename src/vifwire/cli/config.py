"""The configuration file: `/etc/vifwire/vifwire.conf`, INI as neutron.conf is.

Read once, by the CLI, into the keyword arguments of `Settings`; the
environment (VIFWIRE_*) and flags then override what it says. The layout
follows Neutron's where a Neutron operator would look for a key ([DEFAULT]
host and transport-like bus URL, [database] connection, [nova], [agent],
[ml2_type_vxlan] vni_ranges ...); `KEYS` is the whole list, and
deploy/vifwire.conf.example documents each one.

A missing default file is no error (the embedded stack needs none); a file named
by `--config-file` or VIFWIRE_CONFIG_FILE must exist. An unknown section or key,
or a value that does not parse, is one `ConfigError` naming file, key and value:
a typo must never silently fall back to a default.
"""

from __future__ import annotations

import configparser
import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vifwire.settings import AUTH_STRATEGIES, QUOTA_RESOURCES, KeystoneCredentials

DEFAULT_CONFIG_FILE = Path("/etc/vifwire/vifwire.conf")
# Parsed as an ordinary section, so its keys are not copied into every other one.
_DEFAULT = "DEFAULT"


class ConfigError(Exception):
    """The configuration file is unreadable, or names an unknown key or a bad value."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be 1 or more")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise ValueError("must be 1-65535")
    return value


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise ValueError("must be true or false")


def _threads(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("must be more than 0")
    return value


def _range(text: str) -> tuple[int, int]:
    """"1:1000" (Neutron's vni_ranges / network_vlan_ranges shape, one range)."""
    low, sep, high = text.partition(":")
    if not sep:
        raise ValueError("want FIRST:LAST")
    first, last = int(low), int(high)
    if not 0 < first <= last:
        raise ValueError("want FIRST:LAST with 0 < FIRST <= LAST")
    return first, last


def _vlan_range(text: str) -> tuple[str, tuple[int, int]]:
    """"physnet1:1:4094" -> ("physnet1", (1, 4094))."""
    physnet, _, rest = text.partition(":")
    if not physnet or not rest:
        raise ValueError("want PHYSNET:FIRST:LAST")
    return physnet, _range(rest)


def _text(text: str) -> str:
    if not text:
        raise ValueError("must not be empty")
    return text


def _address(text: str) -> str:
    return str(ipaddress.ip_address(text))


def _overlay_ip_version(text: str) -> int:
    if text not in ("4", "6"):
        raise ValueError("must be 4 or 6")
    return int(text)


def _mtu_or_zero(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be 0 (unset) or more")
    return value


def _quota(text: str) -> int:
    value = int(text)
    if value < -1:
        raise ValueError("must be -1 (unlimited) or more")
    return value


def _path(text: str) -> Path:
    return Path(_text(text))


def _auth_strategy(text: str) -> str:
    if text not in AUTH_STRATEGIES:
        raise ValueError(f"must be one of {', '.join(AUTH_STRATEGIES)}")
    return text


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip().lower() for n in text.split(",") if n.strip())


# A service user's keys, as keystoneauth1's password plugin names them; read into
# "<section>.<key>" and assembled into one KeystoneCredentials (see read_config).
_CREDENTIAL_KEYS = ("auth_url", "username", "password", "project_name", "user_domain_name",
                    "project_domain_name")
_CREDENTIAL_SECTIONS = {"keystone_authtoken": "keystone_authtoken", "nova": "nova_auth"}


# (section, key) -> (Settings field, parser). The empty string leaves a field unset.
KEYS: dict[tuple[str, str], tuple[str, Callable[[str], Any]]] = {
    (_DEFAULT, "host"): ("host", _text),
    (_DEFAULT, "run_dir"): ("run_dir", _path),
    (_DEFAULT, "state_dir"): ("state_dir", _path),
    (_DEFAULT, "bus_url"): ("bus_url", _text),
    (_DEFAULT, "transport_url"): ("bus_url", _text),
    (_DEFAULT, "bus_prefix"): ("bus_prefix", _text),
    (_DEFAULT, "global_physnet_mtu"): ("global_physnet_mtu", _positive_int),
    (_DEFAULT, "agent_down_time"): ("agent_down_time_s", _positive_float),
    ("securitygroup", "members_delay"): ("sg_members_delay_s", _positive_float),
    ("securitygroup", "members_max_delay"): ("sg_members_max_delay_s", _positive_float),
    ("securitygroup", "members_read_interval"): ("sg_members_read_interval_s",
                                                 _positive_float),
    (_DEFAULT, "trace_dir"): ("trace_dir", _path),
    (_DEFAULT, "bind_host"): ("api_host", _text),
    (_DEFAULT, "bind_port"): ("api_port", _port),
    (_DEFAULT, "api_workers"): ("api_workers", _positive_int),
    (_DEFAULT, "auth_strategy"): ("auth_strategy", _auth_strategy),
    (_DEFAULT, "allowed_hosts"): ("api_allowed_hosts", _names),
    ("oslo_policy", "policy_file"): ("policy_file", _path),
    ("keystone_authtoken", "token_cache_time"): ("token_cache_time_s", _positive_float),
    # Accepted as keystonemiddleware's, unused: auth_url is where tokens are checked.
    ("keystone_authtoken", "www_authenticate_uri"): ("", _text),
    ("keystone_authtoken", "auth_type"): ("", _text),
    ("nova", "auth_type"): ("", _text),
    ("database", "connection"): ("database_url", _text),
    ("database", "direct_statements"): ("db_direct_statements", _bool),
    ("database", "held_connections"): ("db_held_connections", _bool),
    ("database", "threads"): ("db_threads", _threads),
    ("nova", "url"): ("nova_url", lambda text: _text(text).rstrip("/")),
    ("agent", "report_interval"): ("agent_heartbeat_s", _positive_float),
    ("agent", "ovs_netns"): ("ovs_netns", _text),
    ("agent", "metrics_port"): ("agent_metrics_port", _port),
    ("ovs", "local_ip"): ("local_ip", _address),
    ("ml2", "path_mtu"): ("path_mtu", _mtu_or_zero),
    ("ml2", "overlay_ip_version"): ("overlay_ip_version", _overlay_ip_version),
    ("ml2", "tenant_network_type"): ("default_network_type", _text),
    ("ml2_type_vxlan", "vni_ranges"): ("vxlan_vni_range", _range),
    **{("quotas", f"quota_{name}"): (f"quota_{name}", _quota) for name in QUOTA_RESOURCES},
    # Two fields from one value: see read_config.
    ("ml2_type_vlan", "network_vlan_ranges"): ("vlan_range", _vlan_range),
    **{(section, key): (f"{section}.{key}", _text)
       for section in _CREDENTIAL_SECTIONS for key in _CREDENTIAL_KEYS},
}


def _credentials(path: Path, values: dict[str, Any]) -> None:
    """Folds the "<section>.<key>" values into one KeystoneCredentials per section."""
    for section, field in _CREDENTIAL_SECTIONS.items():
        given = {key: values.pop(f"{section}.{key}") for key in _CREDENTIAL_KEYS
                 if f"{section}.{key}" in values}
        if not given.keys() & {"auth_url", "username", "password"}:
            continue  # only the optional keys, as the example shows them: no user
        absent = [k for k in ("auth_url", "username", "password") if k not in given]
        if absent:
            raise ConfigError(f"{path}: [{section}] needs {', '.join(absent)} with "
                              f"{', '.join(sorted(given))}")
        values[field] = KeystoneCredentials(**given)


def read_config(path: Path | None) -> dict[str, Any]:
    """Settings keyword arguments from the file at `path` (None: the default file,
    if it exists). Raises ConfigError naming the file, key and value at fault."""
    if path is None:
        if not DEFAULT_CONFIG_FILE.exists():
            return {}
        path = DEFAULT_CONFIG_FILE
    parser = configparser.ConfigParser(interpolation=None, default_section="\0none")
    try:
        with path.open(encoding="utf-8") as source:
            parser.read_file(source)
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    except (configparser.Error, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"configuration file {path} is not INI: {first}") from None
    values: dict[str, Any] = {}
    for section in parser.sections():
        for key, raw in parser.items(section, raw=True):
            where = f"{path}: [{section}] {key} = {raw!r}"
            known = KEYS.get((section, key))
            if known is None:
                raise ConfigError(f"{where}: unknown key")
            if raw.strip() == "":
                continue
            field, parse = known
            try:
                value = parse(raw.strip())
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            if field:
                values[field] = value
    _credentials(path, values)
    if "vlan_range" in values:
        values["physical_network"], values["vlan_range"] = values["vlan_range"]
    return values
