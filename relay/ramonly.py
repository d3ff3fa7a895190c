"""RAM-only enforcement: after start-up the relay process writes nothing to disk.

Haven promises that session content, codes and queue state never reach a disk. The
code is written not to write them; this module makes the promise hold even against a
future bug or a careless dependency, for the parts the process itself controls:

* an **audit hook** (PEP 578) refuses every ``open`` for writing (``open()`` modes with
  ``w``, ``a``, ``x`` or ``+``; ``os.open`` with write, create, truncate or append
  flags) and the calls that change the file system (rename, remove, mkdir, ...) by
  raising ``RamOnlyViolation`` (a ``PermissionError``). The first refusal is logged,
  once, naming only the kind of operation, never the path (a path could carry user
  content); every refusal is counted in ``haven_ramonly_write_refusals_total``.
* **no core dumps**: ``RLIMIT_CORE`` is set to 0 and, on Linux, the process is marked
  not dumpable (``prctl(PR_SET_DUMPABLE, 0)``), which also stops other processes of
  the same user from attaching a debugger or reading ``/proc/PID/mem``.
* optional **mlock** (``--mlock``): ``mlockall(MCL_CURRENT | MCL_FUTURE)`` keeps every
  page in RAM so nothing is swapped out; if the platform or the limits refuse, the
  relay stops with a message saying what to change.

Audit hooks cannot be removed, so ``enforce`` is called once by the CLI after the relay
is listening (never by ``serve``, which tests run many times in one process). What
CPython cannot guarantee (copies of immutable bytes, swap without mlock) is written
down in docs/threat-model.md.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import resource
import sys
import threading
from typing import Any

from .config import Config

log = logging.getLogger("haven.ramonly")

#: ``os.open`` flags that can change a file.
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
#: Audit events that change the file system (refused outright once enforced).
FS_WRITE_EVENTS = frozenset(
    {
        "os.chmod", "os.chown", "os.link", "os.mkdir", "os.remove", "os.rename",
        "os.rmdir", "os.symlink", "os.truncate", "os.utime", "shutil.copyfile",
        "shutil.copytree", "shutil.move", "shutil.rmtree", "tempfile.mkstemp",
        "tempfile.mkdtemp",
    }
)  # fmt: skip

# Linux constants (prctl(2), mlockall(2)).
PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3
MCL_CURRENT = 1
MCL_FUTURE = 2


class RamOnlyViolation(PermissionError):
    """Something tried to write to disk after start-up (refused)."""


class RamOnlyError(RuntimeError):
    """A protection the operator asked for (``--mlock``) could not be put in place."""


_state_lock = threading.Lock()
_installed = False
_refusals = 0
_reported = False
_local = threading.local()


def refusals() -> int:
    """How many writes the audit hook has refused in this process (for the metrics)."""
    return _refusals


def installed() -> bool:
    """Whether the audit hook is active in this process."""
    return _installed


def is_write_open(mode: Any, flags: Any) -> bool:
    """Whether an ``open`` audit event's ``mode``/``flags`` ask for write access."""
    if isinstance(mode, str) and any(c in mode for c in "wax+"):
        return True
    return isinstance(flags, int) and bool(flags & WRITE_FLAGS)


def _refuse(what: str) -> None:
    global _refusals, _reported
    with _state_lock:
        _refusals += 1
        first = not _reported
        _reported = True
    if first and not getattr(_local, "busy", False):
        _local.busy = True
        try:
            # The operation only: a path could carry user content, so it is never named.
            log.error(
                "RAM-only: refused %s after start-up; the relay writes nothing to disk "
                "(further refusals are counted in haven_ramonly_write_refusals_total, "
                "not logged)",
                what,
            )
        finally:
            _local.busy = False
    raise RamOnlyViolation(errno.EPERM, f"RAM-only relay: {what} refused")


def _hook(event: str, args: tuple[Any, ...]) -> None:
    """The audit hook: must be cheap, it sees every audited event of the process."""
    if event == "open":
        if len(args) >= 3 and is_write_open(args[1], args[2]):
            _refuse("a file open for writing")
    elif event in FS_WRITE_EVENTS:
        _refuse(f"a file system change ({event})")


def install_audit_hook() -> None:
    """Refuse writes from now on, for the rest of the process (idempotent)."""
    global _installed
    with _state_lock:
        if _installed:
            return
        _installed = True
    sys.addaudithook(_hook)


_libc_handle: Any = None


def _libc() -> Any:
    """The C library (the process's own symbols: no search that could spawn or write)."""
    global _libc_handle
    if _libc_handle is None:
        _libc_handle = ctypes.CDLL(None, use_errno=True)
    return _libc_handle


def disable_core_dumps() -> bool:
    """``RLIMIT_CORE`` 0 everywhere; not dumpable on Linux. ``True`` if both held."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = _libc()
        if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            log.warning("RAM-only: prctl(PR_SET_DUMPABLE, 0) failed; core dumps are still off")
            return False
    except (OSError, AttributeError):
        log.warning("RAM-only: prctl is unavailable; core dumps are still off (RLIMIT_CORE 0)")
        return False
    return True


def dumpable() -> int:
    """The Linux dumpable flag of this process (-1 where it cannot be read)."""
    if not sys.platform.startswith("linux"):
        return -1
    try:
        return int(_libc().prctl(PR_GET_DUMPABLE, 0, 0, 0, 0))
    except (OSError, AttributeError):
        return -1


def lock_memory() -> None:
    """``mlockall(MCL_CURRENT | MCL_FUTURE)`` or ``RamOnlyError`` saying what to change."""
    try:
        libc = _libc()
        mlockall = libc.mlockall
    except (OSError, AttributeError):
        raise RamOnlyError(
            "--mlock: this platform has no mlockall(); run without --mlock and disable "
            "swap for the relay instead (see docs/operations.md)"
        ) from None
    if mlockall(MCL_CURRENT | MCL_FUTURE) == 0:
        return
    err = ctypes.get_errno()
    soft, _hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    limit = "unlimited" if soft == resource.RLIM_INFINITY else f"{soft} bytes"
    raise RamOnlyError(
        f"--mlock: mlockall failed ({errno.errorcode.get(err, err)}: {os.strerror(err)}); "
        f"the locked-memory limit is {limit}. Give the relay CAP_IPC_LOCK or raise "
        "RLIMIT_MEMLOCK (systemd: LimitMEMLOCK=infinity), or run without --mlock and "
        "disable swap (systemd: MemorySwapMax=0)"
    )


def enforce(config: Config) -> None:
    """Put every RAM-only protection in place; call once, after start-up is complete.

    Order matters: ``mlockall`` first (it may fail and stop the relay before anything
    else changed), then core dumps, then the audit hook (last, because it also refuses
    any write the steps before might need).
    """
    if config.mlock:
        lock_memory()
        log.info("RAM-only: memory locked (mlockall)")
    full = disable_core_dumps()
    install_audit_hook()
    log.info(
        "RAM-only: writes refused from now on; core dumps off%s%s",
        "" if full else " (RLIMIT_CORE only)",
        "" if config.mlock else "; memory not locked (swap must be off for the relay)",
    )


__all__ = [
    "RamOnlyError",
    "RamOnlyViolation",
    "disable_core_dumps",
    "dumpable",
    "enforce",
    "install_audit_hook",
    "installed",
    "is_write_open",
    "lock_memory",
    "refusals",
]
