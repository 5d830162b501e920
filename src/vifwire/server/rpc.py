"""The server's bus endpoint (topic `server`): the calls agents make.

Method names and arguments are the contract in `vifwire.messages`. Each method is
one short transaction, run off the loop on the database threads
(`vifwire.server._db.run_transaction`).
"""

from __future__ import annotations

from vifwire.messages import AgentState, FdbEntry, PortDetails
from vifwire.server import firewalls
from vifwire.server._db import run_read
from vifwire.server.agents import AgentService
from vifwire.server.l2pop import L2Population
from vifwire.server.ports import PortService


class AgentRpcEndpoint:
    def __init__(self, ports: PortService, agents: AgentService) -> None:
        self._ports = ports
        self._agents = agents
        self._l2pop: L2Population = ports.ctx.l2pop

    async def get_host_ports(self, host: str) -> list[PortDetails]:
        return await self._ports.host_ports(host)

    async def get_port_details(self, host: str, port_id: str) -> PortDetails | None:
        return await self._ports.host_port(host, port_id)

    async def get_host_fdb(self, host: str) -> list[FdbEntry]:
        return await self._l2pop.host_fdb(host)

    async def get_group_members(self, host: str, group_id: str) -> dict[str, list[str]]:
        return await run_read(self._ports.ctx.engine,
                              lambda conn: firewalls.members(conn, [group_id])[group_id])

    async def ports_up(self, host: str, port_ids: list[str]) -> list[str]:
        return await self._set_status(host, port_ids, "ACTIVE")

    async def ports_down(self, host: str, port_ids: list[str]) -> list[str]:
        return await self._set_status(host, port_ids, "DOWN")

    async def _set_status(self, host: str, port_ids: list[str], status: str) -> list[str]:
        done = await self._ports.set_status(host, list(port_ids), status)
        await self._l2pop.ports_status(host, done, status)  # after the commit
        return done

    async def report_state(self, agent: AgentState) -> None:
        await self._agents.report(agent)
