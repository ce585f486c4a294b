#!/bin/sh
# The one lookup of the trainer's Python, shared by trainer/python.ts (every trial, device
# "auto" at config resolution, `train --dry-run`) and trainer/gpu_check.sh. POSIX sh, so it
# runs on a bare GPU machine without Node.
#
#   trainer/find_python.sh [--module NAME] [cpu|cuda|auto]
#
# Prints one tab-separated line: the interpreter, then (module torch only) its torch version
# and "cuda" or "cpu" (whether torch.cuda.is_available()). Exit 1, with what each candidate
# lacked on stderr, when none fits.
#
# Order. $BILEVEL_PYTHON alone when set: it wins whatever it sees (the trainer then says
# what is missing). cpu: /usr/bin/python3 (Debian's python3-torch, which setup installs),
# then python3 and python on PATH. cuda: the first of python3, python (PATH) and
# /usr/bin/python3 whose torch sees a CUDA device, because a machine with a CUDA build in a
# venv usually still has Debian's CPU-only one. auto: as cuda, then as cpu.
set -u
module=torch
if [ "${1:-}" = "--module" ]; then
  module="${2:-}"
  shift 2 || true
fi
case "$module" in
  "" | *[!A-Za-z0-9_.]*) echo "find_python: --module needs a module name" >&2; exit 2 ;;
esac
device="${1:-cpu}"
case "$device" in
  cpu | cuda | auto) ;;
  *) echo "find_python: the device must be cpu, cuda or auto, got '$device'" >&2; exit 2 ;;
esac

tried=""
seen=" "
memo="" # "path<TAB>probe output" lines: each interpreter imports torch once
tab=$(printf '\t')

# Prints "VERSION cuda|cpu" (torch) or "ok" (another module); nothing when it cannot import.
probe() {
  if [ "$module" = torch ]; then
    "$1" -c 'import torch; print(torch.__version__, "cuda" if torch.cuda.is_available() else "cpu")' 2>/dev/null
  else
    "$1" -c "import $module" >/dev/null 2>&1 && echo ok
  fi
}

# $1: candidate, $2: "cuda" when it must see a CUDA device. Prints the line and returns 0 on a fit.
try() {
  path=$(command -v "$1" 2>/dev/null) || { tried="$tried; $1: not found"; return 1; }
  case "$seen" in *" $path "*) return 1 ;; esac
  seen="$seen$path "
  out=$(printf '%s\n' "$memo" | sed -n "s|^$path$tab||p" | head -n 1)
  if [ -z "$out" ]; then
    out=$(probe "$path" | tail -n 1)
    memo="$memo
$path$tab${out:-none}"
  fi
  [ "$out" = none ] && out=""
  if [ -z "$out" ]; then
    tried="$tried; $path: cannot import $module"
    return 1
  fi
  if [ "$module" != torch ]; then
    printf '%s\n' "$path"
    return 0
  fi
  version=${out% *}
  kind=${out##* }
  if [ "${2:-}" = cuda ] && [ "$kind" != cuda ]; then
    tried="$tried; $path: torch $version sees no CUDA device"
    return 1
  fi
  printf '%s\t%s\t%s\n' "$path" "$version" "$kind"
  return 0
}

if [ -n "${BILEVEL_PYTHON:-}" ]; then
  try "$BILEVEL_PYTHON" && exit 0
  echo "BILEVEL_PYTHON=$BILEVEL_PYTHON does not fit (${tried#; })" >&2
  exit 1
fi
if [ "$module" = torch ] && [ "$device" != cpu ]; then
  for c in python3 python /usr/bin/python3; do try "$c" cuda && exit 0; done
  if [ "$device" = cuda ]; then
    echo "no Python whose torch sees a CUDA device (${tried#; }); set BILEVEL_PYTHON to one" >&2
    exit 1
  fi
  seen=" "
fi
for c in /usr/bin/python3 python3 python; do try "$c" && exit 0; done
echo "no Python with $module found (${tried#; }): on Debian \`apt-get install python3-torch libopenblas0-pthread\`, or set BILEVEL_PYTHON" >&2
exit 1
