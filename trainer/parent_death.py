"""Tie a process's life to its parent's (Linux; a no-op elsewhere). Standard library only.

The adapters start trials in their own process group, so a SIGKILL of the run process
reaches nobody; a trial that prints nothing for minutes (CUDA compile) would only die at
its next write to the closed pipe, holding the GPU while the resumed run reruns it.

- ``python3 -m trainer`` calls ``die_with_parent()`` first: PR_SET_PDEATHSIG = SIGKILL.
- ``python3 trainer/parent_death.py CMD ARGS...`` runs a user's command the same way. The
  command may fork (``uv run`` starts Python as its child, and PDEATHSIG is not inherited
  across fork), so this shim stays as the group leader, gets SIGTERM when its parent dies
  and SIGKILLs its whole process group; the command's exit status is passed on.

``BILEVEL_PARENT_PID`` (set by trainer/process.ts) closes the race where the parent dies
before prctl runs: then we exit at once.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from typing import List

PR_SET_PDEATHSIG = 1
PARENT_ENV = "BILEVEL_PARENT_PID"


def set_parent_death_signal(sig: int) -> bool:
    """Ask the kernel to send `sig` when the parent (thread) dies; False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            stat = f.read()
    except OSError:
        return False
    state = stat[stat.rfind(")") + 2 : stat.rfind(")") + 3]
    return state not in ("Z", "X")


def parent_gone() -> bool:
    """The process named by BILEVEL_PARENT_PID has died (removed from the environment)."""
    raw = os.environ.pop(PARENT_ENV, None)
    if not raw or not raw.isdigit() or not sys.platform.startswith("linux"):
        return False
    return not _running(int(raw))


def die_with_parent() -> None:
    """For the trainer itself: SIGKILL when the parent dies; exit now if it already has."""
    if set_parent_death_signal(signal.SIGKILL) and parent_gone():
        os._exit(1)


def run_tied(argv: List[str]) -> int:
    """Run argv as a child; when our parent dies, SIGKILL our process group (argv's children too)."""

    running: List["subprocess.Popen[bytes]"] = []

    def kill_group(signum: int, frame: object) -> None:
        if os.getpgrp() == os.getpid():
            os.killpg(0, signal.SIGKILL)  # this shim included
        for child in running:
            child.kill()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, kill_group)
    if set_parent_death_signal(signal.SIGTERM) and parent_gone():
        return 1
    try:
        # The direct child also dies if this shim is killed outright.
        child = subprocess.Popen(
            argv, preexec_fn=lambda: set_parent_death_signal(signal.SIGKILL)
        )
    except OSError as e:
        print(f"parent_death: cannot run {argv[0]}: {e}", file=sys.stderr, flush=True)
        return 127
    running.append(child)
    code = child.wait()
    if code < 0:  # killed by a signal: end the same way, so the adapter sees it
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


def main(argv: List[str]) -> int:
    if not argv:
        print("usage: parent_death.py COMMAND [ARGS...]", file=sys.stderr)
        return 2
    return run_tied(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
