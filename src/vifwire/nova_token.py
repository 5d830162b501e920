"""The shared secret between the Neutron server's Nova notifier and the Nova emulator.

Until keystoneauth arrives (issue 11), the emulator's Nova endpoint accepts an
event only with `X-Auth-Token: <token>`, the token being the content of
`<run_dir>/nova-token`: 43 random URL-safe characters, mode 0600, made by
whichever of the two first needs it and read by the other. Anything that can
read that file already owns the run dir (and its database), so the token adds
no new secret to protect; a local process of another user, or a page in a
browser posting to localhost, can no longer fail a VM.

The file is created without a window: written to a private temporary name,
then hard-linked into place, so a reader never sees it half-written, and when
two processes race, both end with the winner's token.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

TOKEN_FILE = "nova-token"
HEADER = "X-Auth-Token"


def token_path(run_dir: Path) -> Path:
    return run_dir / TOKEN_FILE


def read_token(run_dir: Path) -> str | None:
    try:
        return token_path(run_dir).read_text().strip() or None
    except FileNotFoundError:
        return None


def ensure_token(run_dir: Path) -> str:
    """The run dir's token, made (0600) if there is none yet."""
    found = read_token(run_dir)
    if found:
        return found
    run_dir.mkdir(parents=True, exist_ok=True)
    path = token_path(run_dir)
    tmp = path.with_name(f".{TOKEN_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):  # another process won: use its token
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    token = read_token(run_dir)
    if token is None:
        raise OSError(f"cannot create {path}")
    return token
