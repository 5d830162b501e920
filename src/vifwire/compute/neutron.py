"""An async client for the few Neutron v2.0 calls Nova makes while booting.

Nova creates a port with only the network (`POST /v2.0/ports`), then binds it
to the instance and host in a second call (`PUT /v2.0/ports/{id}` with
`device_id`, `device_owner` and `binding:host_id`), and deletes it when the
instance goes away. The demo also needs to find (or make) a network and its
subnet. Resources are plain dicts as Neutron returns them.

Every non-2xx answer raises `NeutronClientError` carrying the server's
`NeutronError` message (`NotFound` for 404); a refused connection or a timeout
raises it too, naming the URL, so the CLI prints one clear line.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from dataclasses import dataclass, field
from typing import Any

import httpx

from vifwire.compute.errors import NeutronClientError, NotFound

Resource = dict[str, Any]

NOVA_DEVICE_OWNER = "compute:nova"
# Nova talks to Neutron through a bounded pool too. httpcore scans every
# connection and every queued request whenever a request starts or ends, so
# requests wait for a slot here, where waiting is free, and its pool never
# queues; a dozen-odd connections keep a server on a small host just as busy.
MAX_CONNECTIONS = 16


def _skip_sniffio_probe() -> None:
    """httpcore runs `import sniffio` on every request; when it is not installed,
    each failed import searches sys.path again (~70 stat calls). A None entry makes
    the failure immediate, which is exactly what "not installed" means."""
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


@dataclass
class TargetNetwork:
    """A network as the storm uses it: the resource, its subnets, the first IPv4 one."""

    network: Resource
    subnet: Resource  # the first IPv4 subnet
    subnets: dict[str, Resource] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return str(self.network["id"])

    @property
    def mtu(self) -> int:
        return int(self.network.get("mtu") or 1500)


class NeutronClient:
    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0,
                 max_connections: int = MAX_CONNECTIONS,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        _skip_sniffio_probe()
        self.url = url.rstrip("/")
        headers = {"Accept": "application/json"}
        if token:
            headers["X-Auth-Token"] = token
        self._slots = asyncio.Semaphore(max_connections)
        self._http = httpx.AsyncClient(
            base_url=f"{self.url}/v2.0", headers=headers, timeout=timeout, transport=transport,
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=max_connections))

    async def __aenter__(self) -> NeutronClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, body: Resource | None = None,
                    params: dict[str, Any] | None = None) -> Resource:
        try:
            async with self._slots:
                response = await self._http.request(method, path, json=body, params=params)
        except httpx.TransportError as exc:
            raise NeutronClientError(
                f"Neutron at {self.url} is unreachable ({type(exc).__name__}: {exc})") from exc
        if response.status_code >= 300:
            raise _error(method, path, response)
        if response.status_code == 204 or not response.content:
            return {}
        data: Resource = response.json()
        return data

    # networks and subnets

    async def find_network(self, name: str) -> Resource | None:
        found = (await self._call("GET", "/networks", params={"name": name}))["networks"]
        return found[0] if found else None

    async def create_network(self, name: str, **extra: Any) -> Resource:
        body = {"network": {"name": name, "admin_state_up": True, **extra}}
        return (await self._call("POST", "/networks", body))["network"]

    async def delete_network(self, network_id: str) -> None:
        await self._call("DELETE", f"/networks/{network_id}")

    async def create_subnet(self, network_id: str, cidr: str, ip_version: int = 4,
                            **extra: Any) -> Resource:
        body = {"subnet": {"network_id": network_id, "cidr": cidr, "ip_version": ip_version,
                           **extra}}
        return (await self._call("POST", "/subnets", body))["subnet"]

    async def list_subnets(self, network_id: str) -> list[Resource]:
        found = await self._call("GET", "/subnets", params={"network_id": network_id})
        return list(found["subnets"])

    # ports, as Nova drives them

    async def create_port(self, network_id: str, project_id: str | None = None,
                          **extra: Any) -> Resource:
        port: Resource = {"network_id": network_id, "admin_state_up": True, **extra}
        if project_id:
            port["tenant_id"] = project_id
        return (await self._call("POST", "/ports", {"port": port}))["port"]

    async def bind_port(self, port_id: str, device_id: str, host: str) -> Resource:
        """Nova's `_update_port`: attach the port to the instance and its host."""
        return await self.update_port(port_id, device_id=device_id,
                                      device_owner=NOVA_DEVICE_OWNER,
                                      **{"binding:host_id": host})

    async def update_port(self, port_id: str, **fields: Any) -> Resource:
        return (await self._call("PUT", f"/ports/{port_id}", {"port": fields}))["port"]

    async def show_port(self, port_id: str) -> Resource:
        return (await self._call("GET", f"/ports/{port_id}"))["port"]

    async def delete_port(self, port_id: str) -> None:
        await self._call("DELETE", f"/ports/{port_id}")

    async def list_ports(self, **filters: Any) -> list[Resource]:
        return list((await self._call("GET", "/ports", params=filters))["ports"])


async def delete_quietly(call: Any, resource_id: str) -> bool:
    """Delete by `call(id)`, treating 404 as done. Returns whether it was found."""
    try:
        await call(resource_id)
    except NotFound:
        return False
    return True


def _error(method: str, path: str, response: httpx.Response) -> NeutronClientError:
    kind: str | None = None
    message = response.text.strip()[:300] or response.reason_phrase
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        fault = body.get("NeutronError")
        if isinstance(fault, dict):
            kind = fault.get("type")
            message = str(fault.get("message") or message)
        elif isinstance(body.get("detail"), str):
            message = body["detail"]
    cls = NotFound if response.status_code == 404 else NeutronClientError
    return cls(f"Neutron {method} /v2.0{path} failed ({response.status_code}"
               f"{' ' + kind if kind else ''}): {message}", response.status_code, kind)
