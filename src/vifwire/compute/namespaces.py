"""Network namespaces entered by one thread at a time, without forking.

pyroute2 reaches into a namespace by forking a helper process that calls
setns() and hands a socket back; `ip netns add` is a fork too. With a busy,
many-threaded Python process each fork costs ~8 ms of CPU, three or four per
VM. Linux lets a single *thread* switch its network namespace (setns and
unshare with CLONE_NEWNET apply to the calling thread only), and a netlink
socket stays bound to the namespace it was created in. So a worker thread steps
into a namespace, opens its socket, and steps back out: no process is created.

Invariant: every function here returns with the calling thread back in the
namespace it started in, or raises `OSError` (a thread that cannot get back is
reported, never silently left elsewhere).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import threading
from collections.abc import Iterator

NETNS_DIR = "/var/run/netns"
CLONE_NEWNET = 0x40000000
MS_REC, MS_BIND, MS_SHARED = 0x4000, 0x1000, 0x100000
MNT_DETACH = 2
_THREAD_NS = "/proc/thread-self/ns/net"

_libc = ctypes.CDLL(None, use_errno=True)
_share_lock = threading.Lock()
_shared = False


def path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _setns(fd: int, what: str) -> None:
    _check(_libc.setns(fd, CLONE_NEWNET), what)


@contextlib.contextmanager
def _returning() -> Iterator[None]:
    """Whatever the block does to this thread's namespace, undo it at the end."""
    home = os.open(_THREAD_NS, os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield
    finally:
        try:
            _setns(home, "cannot return to the original network namespace")
        finally:
            os.close(home)


@contextlib.contextmanager
def entered(name: str | None) -> Iterator[None]:
    """Run the block with this thread inside namespace `name` (None: where it is)."""
    if name is None:
        yield
        return
    fd = os.open(path(name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        with _returning():
            _setns(fd, f"cannot enter network namespace {name}")
            os.close(fd)
            fd = -1
            yield
    finally:
        if fd >= 0:
            os.close(fd)


def _share_netns_dir() -> None:
    # As iproute2 does: /var/run/netns is a shared bind mount of itself, so
    # namespaces mounted on it are seen by every mount namespace.
    global _shared
    with _share_lock:
        if _shared:
            return
        os.makedirs(NETNS_DIR, exist_ok=True)
        target = NETNS_DIR.encode()
        if _libc.mount(b"", target, b"none", MS_SHARED | MS_REC, None) != 0:
            _check(_libc.mount(target, target, b"none", MS_BIND | MS_REC, None),
                   f"cannot bind-mount {NETNS_DIR}")
            _check(_libc.mount(b"", target, b"none", MS_SHARED | MS_REC, None),
                   f"cannot share {NETNS_DIR}")
        _shared = True


def create(name: str) -> None:
    """`ip netns add name`, done by this thread: unshare, bind-mount, return."""
    _share_netns_dir()
    mountpoint = path(name)
    os.close(os.open(mountpoint, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    try:
        with _returning():
            _check(_libc.unshare(CLONE_NEWNET), f"cannot create network namespace {name}")
            _check(_libc.mount(_THREAD_NS.encode(), mountpoint.encode(), b"none", MS_BIND, None),
                   f"cannot mount network namespace {name}")
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(mountpoint)
        raise


def remove(name: str) -> bool:
    """`ip netns del name`; whether it existed."""
    mountpoint = path(name)
    _libc.umount2(mountpoint.encode(), MNT_DETACH)
    try:
        os.unlink(mountpoint)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise
    return True


def exists(name: str) -> bool:
    return os.path.exists(path(name))
