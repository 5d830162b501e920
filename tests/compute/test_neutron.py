"""The Neutron client's error edges, against a real (closed or tiny) HTTP server."""

from __future__ import annotations

import socket

import httpx
import pytest

from vifwire.compute.errors import NeutronClientError, NotFound
from vifwire.compute.neutron import NO_RETRY, NeutronClient, delete_quietly


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_neutron_is_one_clear_line() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    async with NeutronClient(url, retry=NO_RETRY) as neutron:
        with pytest.raises(NeutronClientError, match=f"Neutron at {url} is unreachable"):
            await neutron.find_network("demo")


async def test_neutron_error_message_is_carried() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers["X-Auth-Token"] == "tok"
        return httpx.Response(404, json={"NeutronError": {
            "type": "PortNotFound", "message": "Port p1 could not be found.", "detail": ""}})

    # Neutron is an outside service here: fake its answer.
    async with NeutronClient("http://neutron", token="tok",
                             transport=httpx.MockTransport(answer)) as neutron:
        with pytest.raises(NotFound, match=r"PortNotFound\): Port p1 could not be found") as err:
            await neutron.show_port("p1")
        assert err.value.status == 404 and err.value.kind == "PortNotFound"
        assert await delete_quietly(neutron.delete_port, "p1") is False
