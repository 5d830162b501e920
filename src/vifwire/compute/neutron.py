"""An async client for the few Neutron v2.0 calls Nova makes while booting.

Nova creates a port with only the network (`POST /v2.0/ports`), then binds it
to the instance and host in a second call (`PUT /v2.0/ports/{id}` with
`device_id`, `device_owner` and `binding:host_id`), and deletes it when the
instance goes away. The demo also needs to find (or make) a network and its
subnet. Resources are plain dicts as Neutron returns them.

Every non-2xx answer raises `NeutronClientError` carrying the server's
`NeutronError` message (`NotFound` for 404); a refused connection or a timeout
raises it too, naming the URL, so the CLI prints one clear line.

Retries, as Nova's keystoneauth session does them (`connect_retries` and
`status_code_retries`): a call that could not connect, lost its connection or
its answer, or got 429/502/503/504 is sent again after an exponential backoff
(0.5 s doubling, capped), until `Retry.budget_s` (30 s by default) is spent;
then the last error is raised. Every call but a create is idempotent; a create
whose request may have reached the server is never blindly resent (it could
make a second port): the client first lists ports by the `device_id` the create
carried, as Nova finds an instance's ports, and adopts the one it finds
(networks by name, subnets by network and CIDR, the same way).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
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
# keystoneauth retries 429 and 503; a proxy or load balancer in front of a
# restarting server answers 502 or 504 for the same outage.
RETRIABLE_STATUS = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class Retry:
    """How long a call keeps trying (keystoneauth's backoff: 0.5 s doubling)."""

    budget_s: float = 30.0  # total time after the first failure; 0: never retry
    first_delay_s: float = 0.5
    max_delay_s: float = 5.0

    def delays(self) -> Callable[[], float | None]:
        """The next sleep before a retry, or None once the budget is spent."""
        deadline = time.monotonic() + self.budget_s
        delay = self.first_delay_s

        def next_delay() -> float | None:
            nonlocal delay
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            # A little jitter, so 50 VMs that failed together do not retry together.
            sleep = min(delay * random.uniform(0.8, 1.2), self.max_delay_s, left)
            delay = min(delay * 2, self.max_delay_s)
            return sleep

        return next_delay


DEFAULT_RETRY = Retry()
NO_RETRY = Retry(budget_s=0)


def _maybe_sent(exc: httpx.TransportError) -> bool:
    """Whether the request may have reached the server (so a resend may repeat it)."""
    return not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


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
                 transport: httpx.AsyncBaseTransport | None = None,
                 retry: Retry | None = None) -> None:
        self.url = url.rstrip("/")
        self.retry = retry or DEFAULT_RETRY
        self.retries = 0  # calls sent again, over this client's life (for reports)
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
                    params: dict[str, Any] | None = None,
                    recover: Callable[[], Awaitable[Resource | None]] | None = None,
                    retry: Retry | None = None) -> Resource:
        """One call, retried within the budget.

        `recover` (for a create) runs before a resend when the previous attempt
        may have reached the server; a resource it returns is the answer.
        """
        next_delay = (retry or self.retry).delays()
        maybe_done = False
        while True:
            if maybe_done and recover is not None:
                try:
                    found = await recover()
                except NeutronClientError:
                    found = None  # still unreachable: the resend below fails the same way
                if found is not None:
                    return found
            try:
                async with self._slots:
                    response = await self._http.request(method, path, json=body, params=params)
            except httpx.TransportError as exc:
                error = NeutronClientError(
                    f"Neutron at {self.url} is unreachable ({type(exc).__name__}: {exc})")
                maybe_done = maybe_done or _maybe_sent(exc)
                cause: Exception | None = exc
            else:
                if response.status_code not in RETRIABLE_STATUS:
                    break
                error, cause = _error(method, path, response), None
                maybe_done = True  # a 503 may come from a server that committed first
            delay = next_delay()
            if delay is None:
                raise error from cause
            self.retries += 1
            await asyncio.sleep(delay)
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
        """POST a network; a create whose answer was lost is found again by its name."""
        body = {"network": {"name": name, "admin_state_up": True, **extra}}
        recover = self._finder("/networks", "network", {"name": name})
        return (await self._call("POST", "/networks", body, recover=recover))["network"]

    async def delete_network(self, network_id: str) -> None:
        await self._call("DELETE", f"/networks/{network_id}")

    async def create_subnet(self, network_id: str, cidr: str, ip_version: int = 4,
                            **extra: Any) -> Resource:
        body = {"subnet": {"network_id": network_id, "cidr": cidr, "ip_version": ip_version,
                           **extra}}
        recover = self._finder("/subnets", "subnet", {"network_id": network_id, "cidr": cidr})
        return (await self._call("POST", "/subnets", body, recover=recover))["subnet"]

    async def list_subnets(self, network_id: str) -> list[Resource]:
        found = await self._call("GET", "/subnets", params={"network_id": network_id})
        return list(found["subnets"])

    # ports, as Nova drives them

    async def create_port(self, network_id: str, project_id: str | None = None,
                          device_id: str | None = None, **extra: Any) -> Resource:
        """POST a port. With `device_id`, a create whose answer was lost is found
        again by it before any resend, so a retry never makes a second port."""
        port: Resource = {"network_id": network_id, "admin_state_up": True, **extra}
        if project_id:
            port["tenant_id"] = project_id
        recover = None
        if device_id:
            port["device_id"] = device_id
            recover = self._finder("/ports", "port", {"device_id": device_id,
                                                      "network_id": network_id})
        return (await self._call("POST", "/ports", {"port": port}, recover=recover))["port"]

    def _finder(self, path: str, member: str,
                filters: dict[str, Any]) -> Callable[[], Awaitable[Resource | None]]:
        """A create's `recover`: the resource `filters` find, as `{member: resource}`."""

        async def find() -> Resource | None:
            # One try: the loop around it is already retrying.
            found = (await self._call("GET", path, retry=NO_RETRY, params=filters))[
                member + "s"]
            return {member: found[0]} if found else None

        return find

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

    # security groups

    async def create_security_group(self, name: str, project_id: str | None = None
                                    ) -> Resource:
        """POST a group (it gets Neutron's two egress rules, no ingress)."""
        group: Resource = {"name": name}
        if project_id:
            group["tenant_id"] = project_id
        recover = self._finder("/security-groups", "security_group", {"name": name})
        return (await self._call("POST", "/security-groups", {"security_group": group},
                                 recover=recover))["security_group"]

    async def delete_security_group(self, group_id: str) -> None:
        await self._call("DELETE", f"/security-groups/{group_id}")


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
