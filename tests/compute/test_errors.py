"""Fatal storm errors are one clear `ComputeError` line, raised before anything is made."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from vifwire.compute.errors import ComputeError, OvsUnavailable
from vifwire.compute.plug import OvsPlugger
from vifwire.compute.storm import StormConfig, run_storm
from vifwire.settings import OvsSettings


async def test_ovs_unreachable(tmp_path: Path) -> None:
    with pytest.raises(OvsUnavailable, match=r"OVSDB at .* unreachable"):
        async with OvsPlugger(OvsSettings(run_dir=tmp_path / "no-ovs"), "r"):
            pass


async def test_storm_without_ovs_or_with_bad_count(tmp_path: Path) -> None:
    config = StormConfig(neutron_url="http://127.0.0.1:9", network="demo", count=2,
                         host="h", ovs=OvsSettings(run_dir=tmp_path / "no-ovs"),
                         run_dir=tmp_path)
    with pytest.raises(ComputeError, match=r"OVSDB at .* unreachable"):
        await run_storm(config)
    with pytest.raises(ComputeError, match="count must be at least 1"):
        await run_storm(replace(config, count=0))
    assert not (tmp_path / "compute").exists() or not list((tmp_path / "compute").iterdir())
