"""The suite's policy for a missing service (tests/conftest.py): skip here, fail in CI."""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

import pytest

Unavailable = Callable[[str, object], NoReturn]


def test_a_missing_service_skips_the_test_outside_ci(
        monkeypatch: pytest.MonkeyPatch, unavailable: Unavailable) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="PostgreSQL unavailable: refused"):
        unavailable("PostgreSQL", "refused")


@pytest.mark.parametrize("value", ["true", "1", "yes"])
def test_a_missing_service_fails_the_test_in_ci(
        monkeypatch: pytest.MonkeyPatch, unavailable: Unavailable, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match=r"MariaDB unavailable: refused.*CI is set"):
        unavailable("MariaDB", "refused")


def test_ci_false_is_not_ci(monkeypatch: pytest.MonkeyPatch, unavailable: Unavailable) -> None:
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        unavailable("Chromium", "not installed")
