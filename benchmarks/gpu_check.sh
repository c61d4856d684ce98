#!/usr/bin/env bash
# One-command GPU readiness check (issue 15). On one H100/H200 it runs:
#   * benchmarks/mfu.py, ~1.2B model (its default shape), bf16: eager and compiled,
#     selective activation checkpointing off and on (goal: >= 50 % bf16 MFU);
#   * forward and training-step comparisons with transformers (bf16 autocast);
#   * cached decoding vs transformers at dim 2048 and dim 256, eager and compiled
#     (CUDA graphs);
# and writes one Markdown table (gpu_check.md) plus every benchmark's log to --out.
# Planned to take under 8 minutes on one H100/H200 (not yet measured on one).
#
#   benchmarks/gpu_check.sh [--device cuda|cpu] [--tiny] [--out DIR]
#
# --tiny shrinks every shape (and compiles with aot_eager, tracing only) so the
# whole script runs end to end on a CPU in a minute or two; its figures mean nothing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
device=cuda
tiny=0
out=gpu_check_out
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device="$2"; shift 2 ;;
    --tiny) tiny=1; shift ;;
    --out) out="$2"; shift 2 ;;
    *) echo "gpu_check.sh: unknown argument $1 (use --device, --tiny, --out)" >&2; exit 2 ;;
  esac
done
python="${PYTHON:-python}"
mkdir -p "$out"

if [ "$tiny" = 1 ]; then
  mfu_shape=(--dim 64 --layers 2 --heads 4 --vocab 256 --seq 64 --batch 2 --steps 2 --warmup 1)
  mfu_compile=(--compile --compile-backend aot_eager)
  cmp_shape=(--dim 64 --layers 2 --heads 4 --vocab 256 --batch 2 --seq 32)
  dec_big=(--dim 64 --layers 2 --heads 4 --vocab 256 --batch 2 --prompt 8 --new 8 --repeats 2
    --compile-backend aot_eager)
  dec_small=(--dim 32 --layers 2 --heads 2 --vocab 256 --batch 2 --prompt 8 --new 8 --repeats 2 --no-compile)
  repeats=2
else
  mfu_shape=()  # mfu.py's default: dim 2048, 20 layers, 16 heads, vocab 32000, seq 2048, batch 4
  mfu_compile=(--compile)
  cmp_shape=(--dim 2048 --layers 16 --heads 16 --vocab 32000 --batch 4 --seq 1024)
  dec_big=(--dim 2048 --layers 16 --heads 16 --vocab 32000 --batch 4 --prompt 64 --new 128 --repeats 3)
  dec_small=(--dim 256 --layers 8 --heads 4 --vocab 32000 --batch 4 --prompt 64 --new 128 --repeats 3)
  repeats=5
fi

run() {  # run NAME COMMAND...: log to $out/NAME.log, keep going if one check fails
  local name="$1"; shift
  echo "== $name: $*" >&2
  if ! "$@" >"$out/$name.log" 2>&1; then
    echo "FAILED (exit $?)" >>"$out/$name.log"
    echo "   $name failed; see $out/$name.log" >&2
  fi
}

start=$(date +%s)
for ac in none selective; do
  run "mfu_eager_ac-$ac" "$python" "$here/mfu.py" "${mfu_shape[@]}" --precision bf16 --ac "$ac"
  run "mfu_compiled_ac-$ac" "$python" "$here/mfu.py" "${mfu_shape[@]}" --precision bf16 --ac "$ac" \
    "${mfu_compile[@]}"
done
run forward "$python" "$here/forward_throughput.py" "${cmp_shape[@]}" --dtype bfloat16 \
  --device "$device" --repeats "$repeats"
run train "$python" "$here/train_throughput.py" --part compare "${cmp_shape[@]}" \
  --precision bf16 --device "$device" --repeats "$repeats"
run decode_big "$python" "$here/generate_throughput.py" "${dec_big[@]}" --device "$device"
run decode_small "$python" "$here/generate_throughput.py" "${dec_small[@]}" --device "$device"
elapsed=$(( $(date +%s) - start ))
"$python" "$here/gpu_check_table.py" "$out" --device "$device" --tiny "$tiny" \
  --seconds "$elapsed" >"$out/gpu_check.md"
cat "$out/gpu_check.md"
