"""Running the `vifwire` CLI against a rig, and looking for what it left."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

VIFWIRE = [sys.executable, "-m", "vifwire.cli.main"]


def free_port() -> int:
    from vifwire.cluster.services import free_port as pick

    return pick()


def vifwire(run_dir: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIFWIRE_")}
    return subprocess.run([*VIFWIRE, "--run-dir", str(run_dir), *args], capture_output=True,
                          text=True, timeout=timeout, env={**env, "COLUMNS": "200"},
                          check=False)


def traversable_dir() -> Path:
    """A run dir the postgres and mysql users can reach (pytest's tmp dirs are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="vwcluster-", dir="/tmp"))
    path.chmod(0o755)
    return path


def netns_exists(name: str) -> bool:
    return Path(f"/run/netns/{name}").exists()


def root_link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", "dev", name], capture_output=True,
                          check=False).returncode == 0
