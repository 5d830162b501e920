"""OvsBridge's tagging transactions against a real ovsdb-server: batching, errors."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from vifwire.ovs.bridge import OvsBridge
from vifwire.ovs.model import OvsWriteFailed, PortWrite
from vifwire.ovs.runtime import OvsRuntime
from vifwire.settings import OvsSettings

pytestmark = pytest.mark.ovs


async def test_a_burst_is_tagged_and_a_missing_port_fails_alone(
        ovs: OvsRuntime, ovs_settings: OvsSettings) -> None:
    bridge_name = ovs.settings.integration_bridge
    taps = [f"tapw{uuid.uuid4().hex[:6]}" for _ in range(3)]
    for tap in taps:
        ovs.vsctl("add-port", bridge_name, tap, "--", "set", "Interface", tap,
                  f"external_ids:iface-id={uuid.uuid4()}")
    bridge = OvsBridge(ovs_settings, lambda changes: None, timeout=10)
    await bridge.connect()
    try:
        writes = [PortWrite(tap, 10 + i, {"net_uuid": f"net-{i}"}) for i, tap in enumerate(taps)]
        missing = PortWrite("tapnothere", 99)
        results = await asyncio.gather(*(bridge.apply(w) for w in [*writes, missing]),
                                       return_exceptions=True)
        assert results[:3] == [None, None, None]
        assert isinstance(results[3], OvsWriteFailed) and "tapnothere" in str(results[3])
        for i, tap in enumerate(taps):
            assert ovs.vsctl("get", "Port", tap, "tag").strip() == str(10 + i)
            assert ovs.vsctl("get", "Port", tap, "other_config:net_uuid").strip() \
                .strip('"') == f"net-{i}"
        with pytest.raises(OvsWriteFailed):
            await bridge.apply(missing)
    finally:
        await bridge.close()
        for tap in taps:
            ovs.vsctl("--if-exists", "del-port", bridge_name, tap)
