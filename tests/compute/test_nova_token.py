"""The run dir's Nova token: made once, private, the same for every reader."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vifwire.nova_token import ensure_token, read_token, token_path


def test_made_once_private_and_shared(tmp_path: Path) -> None:
    assert read_token(tmp_path) is None
    token = ensure_token(tmp_path)
    assert len(token) >= 40
    assert token_path(tmp_path).stat().st_mode & 0o777 == 0o600
    assert ensure_token(tmp_path) == token == read_token(tmp_path)
    assert ensure_token(tmp_path / "other") != token  # one secret per run dir


def test_racing_creators_agree(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        tokens = set(pool.map(lambda _: ensure_token(tmp_path / "run"), range(32)))
    assert len(tokens) == 1
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["nova-token"]
