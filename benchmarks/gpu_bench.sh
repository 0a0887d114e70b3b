#!/usr/bin/env bash
# On the GPU machine, after benchmarks/gpu_check.sh built the extension: the end-to-end benchmarks of the throughput
# targets, one stage per argument (each fits one 10-minute device call). Results go to $OUT (or ./gpu_logs).
#   e2e       ImageNet-256 ADM, sr4, 20 steps, every mode at batch 1 and 8   (targets: 5x at batch 1, 3x at batch 8)
#   b32       the reference loop and the bf16 modes at batch 32               (target: network >= 50% of bf16 GEMM)
#   b64       the fast modes at batch 64, memory                               (target: <= 3 images/sample beyond it)
#   compile   compiled_bf16 at batch 8 in each graph-compatible compile mode   (picks the default by measurement)
#   dataset   256 images of 256x256 restored from a folder at batch 1, 8, 32  (target: < 5% outside the sampler)
#   auto      float32 eager against the automatic choice (ddrm_fast.speed.auto), batch 1 and 8, with PSNR
#             (target: end to end >= 2x, within 0.05 dB)
set -uo pipefail
OUT=${OUT:-gpu_logs}; mkdir -p "$OUT"
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
bench="python3 -m ddrm_fast bench --model adm256 --task sr4 --steps 20"
for stage in "$@"; do
  case "$stage" in
    e2e) $bench --batch 1,8 --out "$OUT/e2e" 2>&1 | tail -12 ;;
    b32) $bench --batch 32 --modes reference,fused_bf16,compiled_bf16 --out "$OUT/b32" 2>&1 | tail -6 ;;
    b64) $bench --batch 64 --modes fused,fused_bf16,compiled_bf16 --repeats 1 --out "$OUT/b64" 2>&1 | tail -6 ;;
    compile)
      for mode in default max-autotune-no-cudagraphs; do
        $bench --batch 8 --modes compiled_bf16 --compile-mode "$mode" --out "$OUT/compile_$mode" 2>&1 | tail -3
      done ;;
    dataset)  # the defaults, then the fast path (bf16 network, graphs, in-kernel noise)
      for speed in "" "--dtype bfloat16 --channels-last --cuda-graph --noise philox"; do
        python3 benchmarks/bench_batch.py --device cuda --images 256 --size 256 --batch 1,8,32 $speed \
          --out "$OUT/batch.md" 2>&1 | tail -8
      done ;;
    auto) $bench --batch 1,8 --modes reference,fused,auto --out "$OUT/auto" 2>&1 | tail -8 ;;
    *) echo "unknown stage $stage (e2e, b32, b64, compile, dataset, auto)"; exit 2 ;;
  esac
done
