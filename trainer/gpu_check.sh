#!/usr/bin/env bash
# Prepared GPU check (npm run check:gpu): one 60 s CUDA trial at the GPU defaults, then
# the figures worth having: val_bpb, tokens/s, MFU, peak memory, steps, compile/warm-up
# time. Sized to finish in well under 5 minutes on an H200 (compile ~1 min, 60 s of
# training, eval ~seconds). If torch.compile fails, it retries once without it.
#
#   trainer/gpu_check.sh                 # the real check (needs CUDA)
#   trainer/gpu_check.sh --device cpu    # dry mode: checks the script and the GPU config on CPU
#   BUDGET=30 trainer/gpu_check.sh       # a shorter trial
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEVICE=cuda
[[ "${1:-}" == "--device" ]] && DEVICE="${2:?--device needs cpu or cuda}"
BUDGET="${BUDGET:-60}"
PY="${BILEVEL_PYTHON:-}"
if [[ -z "$PY" ]]; then
  for cand in python3 /usr/bin/python3; do
    if "$cand" -c 'import torch' 2>/dev/null; then PY="$cand"; break; fi
  done
fi
[[ -n "$PY" ]] || { echo "gpu_check: no Python with torch (set BILEVEL_PYTHON)" >&2; exit 1; }
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
cd "$ROOT"

echo "== environment"
"$PY" - <<'PY'
import torch
print(f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"gpu: {p.name}, {p.total_memory / 2**30:.0f} GiB, capability {p.major}.{p.minor}")
    print(f"sdpa: {hasattr(torch.nn.functional, 'scaled_dot_product_attention')}, compile: {hasattr(torch, 'compile')}")
PY
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv,noheader || true

echo "== GPU default config (from trainer/hparams.py)"
"$PY" - <<'PY'
from trainer.hparams import defaults
from trainer.model import GPT, model_config
hp = defaults("cuda")
print(" ".join(f"{k}={v}" for k, v in hp.items()))
m = GPT(model_config(hp, 256))
print(f"params: {m.num_params() / 1e6:.1f}M, training FLOPs/token: {m.flops_per_token() / 1e6:.0f}M")
PY

run_trial() {  # $1: log file, then extra trainer args
  local log="$1"; shift
  set +e
  "$PY" -m trainer --device "$DEVICE" --budget "$BUDGET" "$@" >"$log" 2>"$log.err"
  local rc=$?
  set -e
  return $rc
}

EXTRA=()
if [[ "$DEVICE" == "cpu" ]]; then
  # Dry mode: the GPU defaults are far too large for a CPU; use the CPU defaults briefly.
  BUDGET="${BUDGET_CPU:-5}"
  EXTRA=(--eval-bytes 16384)
fi
echo "== trial: $BUDGET s on $DEVICE (log: $OUT/trial.log)"
START=$(date +%s)
rc=0
run_trial "$OUT/trial.log" "${EXTRA[@]}" || rc=$?
if [[ $rc -eq 1 && "$DEVICE" == "cuda" ]]; then
  echo "trial crashed (exit 1); last error lines:"; tail -5 "$OUT/trial.log.err"
  echo "== retry without torch.compile"
  rc=0
  run_trial "$OUT/trial.log" --compile off || rc=$?
fi
echo "wall time: $(( $(date +%s) - START )) s, exit code $rc"
if [[ $rc -ne 0 ]]; then
  tail -20 "$OUT/trial.log.err" >&2
  exit $rc
fi

echo "== figures"
"$PY" - "$OUT/trial.log" <<'PY'
import json, sys
start = result = None
for line in open(sys.argv[1]):
    if line.startswith("{"):
        rec = json.loads(line)
        if rec.get("event") == "start":
            start = rec
        elif rec.get("event") == "result":
            result = rec
assert start and result, "no start/result record in the trial log"
mfu = result["mfu_percent"]
print(f"device:            {result['device']} ({result['dtype']}, compiled={start['compiled']}, sdpa={start['sdpa']})")
print(f"val_bpb:           {result['val_bpb']:.6f}")
print(f"tokens_per_second: {result['tokens_per_second']:,.0f}")
print(f"mfu_percent:       {'n/a' if mfu is None else f'{mfu:.2f}'}  (goal >= 40 on H100/H200)")
print(f"peak_memory_mb:    {result['peak_memory_mb']:,.0f}")
print(f"num_steps:         {result['num_steps']} ({result['grad_accum_steps']} micro-batches each)")
print(f"num_params:        {result['num_params'] / 1e6:.1f}M")
print(f"training_seconds:  {result['training_seconds']:.1f}")
print(f"warmup_seconds:    {result['warmup_seconds']:.1f} ({result['warmup_steps']} steps, compile included)")
print(f"startup_seconds:   {result['startup_seconds']:.1f}")
print(f"eval_seconds:      {result['eval_seconds']:.1f} ({result['eval_bytes']} bytes)")
print(f"total_seconds:     {result['total_seconds']:.1f}")
PY
echo "== summary block (as printed by the trainer)"
sed -n '/^---$/,$p' "$OUT/trial.log"
