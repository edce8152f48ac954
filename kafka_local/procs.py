"""Child-process helpers shared by the local broker and the benchmark's child processes."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess

__all__ = ["die_with_parent", "stop_process"]

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn``: the child gets SIGKILL when its parent dies (Linux; no-op elsewhere).

    Runs in the child between fork and exec, so a crashed or SIGKILLed owner cannot leave a
    broker JVM or a detector behind.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float, *, resume: bool = False) -> None:
    """SIGTERM (after SIGCONT when ``resume``: the process may be frozen), then SIGKILL to its
    process group if it has not exited within ``timeout_s``.

    The process must lead its own group (``start_new_session=True``).
    """
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        if resume:
            os.kill(proc.pid, signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
