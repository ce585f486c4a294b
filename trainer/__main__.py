"""python3 -m trainer: one training trial (see trainer/train.py)."""

import os
import sys

from trainer.parent_death import die_with_parent

# First of all: die with the process that started us (see trainer/parent_death.py).
die_with_parent()

from trainer.cpu_env import child_env, needs_reexec  # noqa: E402

# OpenBLAS reads its settings when torch loads it: fix the environment first, then
# restart the interpreter once with it (the flag guards against a loop).
if needs_reexec() and not os.environ.get("BILEVEL_TRAINER_REEXEC"):
    env = child_env(dict(os.environ))
    env["BILEVEL_TRAINER_REEXEC"] = "1"
    # orig_argv keeps the interpreter's own flags (-X, -W, -E, -I, -O) along with -m trainer.
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)

from trainer.train import main  # noqa: E402

sys.exit(main())
