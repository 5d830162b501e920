"""report.html: self-contained, and really rendered by headless Chromium."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import pytest
from test_profile_report import make_profile_dir

from vifwire.profile import render

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = make_profile_dir(tmp_path_factory.mktemp("profile"), n=30)
    return render(directory)[1]


def test_html_is_self_contained(report: Path) -> None:
    html = report.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html and "fetch(" not in html
    for marker in ('class="chart sequence"', 'class="chart gantt"', 'class="chart hist"',
                   "CPU % per component", "statement cache hit ratio",
                   "Dominant stage of plugged-&gt;event_received"):
        assert marker in html
    for lifeline in ("compute", "server", "agent", "ovsdb"):
        assert f'font-weight="bold">{lifeline}</text>' in html


def _chromium(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM
    with tempfile.TemporaryDirectory() as profile_dir:
        return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile_dir}", *args],
                              capture_output=True, text=True, timeout=timeout, check=False)


def _pixels(png: bytes) -> tuple[int, int, int, bytes]:
    """(width, height, channels, raw pixels) of an 8-bit RGB/RGBA PNG."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos:pos + 4])
        kind, data = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = data
        elif kind == b"IDAT":
            idat += data
        pos += 12 + length
    width, height, depth, color_type = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and color_type in (2, 6)
    bpp = 3 if color_type == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    out, prev = bytearray(), bytearray(stride)
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        out += line
        prev = line
    return width, height, bpp, bytes(out)


@pytest.fixture
def chromium(unavailable: Callable[[str, object], NoReturn]) -> str:
    if CHROMIUM is None:
        unavailable("Chromium", "not installed (apt-get install chromium)")
    return CHROMIUM


def test_chromium_renders_without_errors(chromium: str, report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    result = _chromium("--enable-logging=stderr", "--v=0", f"--screenshot={shot}",
                       "--window-size=1400,2000", report.as_uri())
    assert shot.exists(), result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines()
              if "Uncaught" in line or ("CONSOLE" in line and "error" in line.lower())]
    assert not errors, errors

    width, height, bpp, pixels = _pixels(shot.read_bytes())
    assert (width, height) == (1400, 2000)
    total = width * height
    step = 7  # sample every 7th pixel: plenty, and quick in pure Python
    sampled = [pixels[i:i + 3] for i in range(0, total * bpp, bpp * step)]
    non_white = sum(1 for p in sampled if min(p) < 240)
    colourful = sum(1 for p in sampled if max(p) - min(p) > 80)
    assert non_white / len(sampled) > 0.02, "screenshot is (almost) blank"
    assert colourful > 200, "no coloured chart marks in the screenshot"


def test_chromium_dom_has_the_charts(chromium: str, report: Path) -> None:
    dom = _chromium("--dump-dom", report.as_uri()).stdout
    assert 'data-ready="1"' in dom  # the inline script ran to its end
    assert dom.count("<svg") >= 10
    assert dom.count('class="msg"') >= 10
    assert dom.count('class="seg"') >= 30 * 9
