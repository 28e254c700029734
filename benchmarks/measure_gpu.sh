#!/usr/bin/env bash
# Measure the book at one preset on this machine's GPU in one go, for the README and the
# instructor guide: the card, the step benchmarks, the chapters' times and the GPU's peak memory.
#
#   bash benchmarks/measure_gpu.sh [OUTDIR]          # default: gpu-measurements/
#   PRESET=lab CHAPTERS="03_experiment1" bash benchmarks/measure_gpu.sh
#
# Writes into OUTDIR: card.txt (nvidia-smi), train_step.txt (bench_train_step.py: bare and full
# steps and their ratio), flops.txt (the FLOP estimate, to set beside the measurement),
# chapters.txt (chapter_times.py's output), timings.json (the record it wrote: copy it to
# emseg_tutorial/_data/timings.json to show these times in the chapters) and gpu_memory.csv (used
# GPU memory once a second while the chapters ran; the peak is printed at the end). Without
# nvidia-smi (a CPU machine: useful only to check the script) the card and memory are skipped.
# Every step runs even when an earlier one fails; the exit status is that of the chapters.
set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-gpu-measurements}"
PRESET="${PRESET:-gpu}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 EMSEG_PROGRESS=0

if command -v nvidia-smi > /dev/null; then
    nvidia-smi > "$OUT/card.txt" 2>&1
    nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv,noheader,nounits \
        -l 1 > "$OUT/gpu_memory.csv" 2>/dev/null &
    SAMPLER=$!
else
    echo "no nvidia-smi: no card, no memory samples" | tee "$OUT/card.txt"
    SAMPLER=""
fi

"$PY" "$ROOT/benchmarks/bench_train_step.py" --preset "$PRESET" 2>&1 | tee "$OUT/train_step.txt"
"$PY" "$ROOT/benchmarks/flops_estimate.py" --presets "$PRESET" 2>&1 | tee "$OUT/flops.txt"
cp "$ROOT/emseg_tutorial/_data/timings.json" "$OUT/timings.json"
# shellcheck disable=SC2086  # CHAPTERS is a list of names
"$PY" "$ROOT/benchmarks/chapter_times.py" --preset "$PRESET" --out "$OUT/timings.json" \
    ${CHAPTERS:+--chapters $CHAPTERS} 2>&1 | tee "$OUT/chapters.txt"
status=${PIPESTATUS[0]}

if [ -n "$SAMPLER" ]; then
    kill "$SAMPLER" 2>/dev/null
    awk -F', ' 'NF >= 2 && $2 + 0 > peak { peak = $2 + 0 } END { printf "peak GPU memory used: %d MiB\n", peak }' \
        "$OUT/gpu_memory.csv" | tee -a "$OUT/chapters.txt"
fi
echo "results in $OUT (exit status of the chapters: $status)"
exit "$status"
