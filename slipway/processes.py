"""Child processes that must not outlive their parent (Linux ``prctl(PR_SET_PDEATHSIG)``)."""
from __future__ import annotations

import ctypes
import signal

PR_SET_PDEATHSIG = 1


def libc():
    return ctypes.CDLL("libc.so.6", use_errno=True)


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """In a child (a ``preexec_fn``, or just after a fork): get ``sig`` when the parent dies.

    Forked HTTP processes ask for SIGTERM (they stop cleanly); build commands for SIGKILL, so a
    killed worker leaves no build running. Without the call (not Linux) nothing happens.
    """
    try:
        libc().prctl(PR_SET_PDEATHSIG, sig)
    except (OSError, AttributeError):
        pass
