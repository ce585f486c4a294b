"""Tie a process's life to its parent's (Linux; a no-op elsewhere). Standard library only.

The adapters start trials in their own process group, so a SIGKILL of the run process
reaches nobody; a trial that prints nothing for minutes (CUDA compile) would only die at
its next write to the closed pipe, holding the GPU while the resumed run reruns it.

- ``python3 -m trainer`` calls ``die_with_parent()`` first: PR_SET_PDEATHSIG = SIGKILL.
- ``python3 trainer/parent_death.py CMD ARGS...`` runs a user's command the same way. The
  command may fork (``uv run`` starts Python as its child, and PDEATHSIG is not inherited
  across fork), so this shim stays as the group leader, gets SIGTERM when its parent dies
  and SIGKILLs its whole process group; the command's exit status is passed on.
- The shim is a child subreaper (PR_SET_CHILD_SUBREAPER): a process the command starts stays
  its descendant even after it double-forks into a session of its own, so the adapter's
  deadline (trainer/process.ts) finds it in /proc; and when the command ends, or the parent
  dies, the shim kills every descendant left before it exits.

``BILEVEL_PARENT_PID`` (set by trainer/process.ts) closes the race where the parent dies
before prctl runs: then we exit at once.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from typing import Dict, List, Set

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PARENT_ENV = "BILEVEL_PARENT_PID"


def prctl(option: int, value: int) -> bool:
    """prctl(option, value); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, value, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def set_parent_death_signal(sig: int) -> bool:
    """Ask the kernel to send `sig` when the parent (thread) dies; False where unsupported."""
    return prctl(PR_SET_PDEATHSIG, int(sig))


def descendants(root: int) -> List[int]:
    """The live (not zombie) descendants of `root`, from /proc."""
    children: Dict[int, List[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) < 2 or fields[0] in ("Z", "X"):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    out: List[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def kill_descendants() -> None:
    """Stop every descendant (a stopped process cannot fork) until no new one appears, then kill all."""
    stopped: Set[int] = set()
    for _ in range(50):
        found = [p for p in descendants(os.getpid()) if p not in stopped]
        if not found:
            break
        for pid in found:
            try:
                os.kill(pid, signal.SIGSTOP)
            except OSError:
                pass
            stopped.add(pid)
    for pid in stopped:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


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
        kill_descendants()
        for child in running:
            child.kill()
        if os.getpgrp() == os.getpid():
            os.killpg(0, signal.SIGKILL)  # this shim included
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, kill_group)
    if set_parent_death_signal(signal.SIGTERM) and parent_gone():
        return 1
    prctl(PR_SET_CHILD_SUBREAPER, 1)
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
    # What the command left running (a server, a process in its own session) ends with it.
    kill_descendants()
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
