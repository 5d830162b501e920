"""Opening an ovsdbapp connection to a private Open vSwitch, with bounded waits.

Three ovsdbapp habits this module tames so callers need not know them:

- Fetching the schema blocks on a socket with no timeout; it runs here in a
  helper thread joined with a deadline, so an ovsdb-server that accepts but
  never answers fails in `timeout` seconds instead of hanging.
- `ovsdbapp.backend.ovs_idl.Backend` keeps its connection in a *class*
  attribute, so two APIs of the same class in one process would share the first
  connection. `open_vswitch_api` builds a fresh subclass per connection.
- Registering only the tables and columns a component reads keeps the IDL from
  waking up for every statistics update vswitchd writes.

Everything here is blocking: call it from a thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ovsdbapp.backend.ovs_idl import connection, idlutils
from ovsdbapp.schema.open_vswitch import impl_idl

from vifwire.ovs.runtime import OvsError

SCHEMA_NAME = "Open_vSwitch"

# table -> columns to monitor (None: the whole table)
Tables = Mapping[str, Sequence[str] | None]


def _with_deadline(fn: Callable[[], Any], timeout: float, what: str) -> Any:
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except Exception as exc:
            result["error"] = exc

    thread = threading.Thread(target=target, name=f"ovs:{what}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise OvsError(f"{what}: no answer within {timeout:g}s")
    if "error" in result:
        raise OvsError(f"{what}: {result['error']}") from result["error"]
    return result["value"]


def open_connection(remote: str, tables: Tables, *, timeout: float = 10.0,
                    idl_class: type[connection.OvsdbIdl] = connection.OvsdbIdl,
                    **idl_kwargs: Any) -> connection.Connection:
    """An unstarted ovsdbapp Connection monitoring only `tables` at `remote`."""
    schema = _with_deadline(lambda: idlutils.fetch_schema_json(remote, SCHEMA_NAME),
                            timeout, f"OVSDB at {remote} unreachable")
    helper = idlutils.create_schema_helper(schema)
    for table, columns in tables.items():
        if columns is None:
            helper.register_table(table)
        else:
            helper.register_columns(table, list(columns))
    idl = idl_class(remote, helper, **idl_kwargs)
    return connection.Connection(idl, timeout)


def open_vswitch_api(conn: connection.Connection) -> impl_idl.OvsdbIdl:
    """Start `conn` and wrap it in the Open_vSwitch API (vsctl-like transactions).

    Raises OvsError if the initial database dump does not arrive in time.
    """
    api_class = type("PrivateOvsdbIdl", (impl_idl.OvsdbIdl,), {"_ovsdb_connection": None})
    try:
        return api_class(conn)
    except Exception as exc:
        conn.idl.close()
        raise OvsError(f"OVSDB connection failed: {exc}") from exc
