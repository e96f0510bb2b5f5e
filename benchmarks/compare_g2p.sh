#!/usr/bin/env bash
# The ERPO algorithms on English G2P (CMUdict, the built-in g2p-cmudict task): the same seven algorithms as
# the machine-translation table, 5 seeds, one shared MLE checkpoint, the same step budget each.
# Metrics WER / PER (lower is better; WER picks checkpoints); reward = negative edit distance to the
# reference phonemes.  Resumable.  Report -> benchmarks/reports/g2p.
# Environment: OUT, SEEDS, PRETRAIN_STEPS, BUDGET_STEPS, GPUS.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/compare_g2p}
SEEDS=${SEEDS:-1,2,3,4,5}
PRETRAIN_STEPS=${PRETRAIN_STEPS:-4000}
BUDGET_STEPS=${BUDGET_STEPS:-2000}
GPUS=${GPUS:-auto}
COMMAND="SEEDS=$SEEDS PRETRAIN_STEPS=$PRETRAIN_STEPS BUDGET_STEPS=$BUDGET_STEPS bash benchmarks/compare_g2p.sh"
python -m seqlab.cli compare --config configs/g2p_lstm.yaml \
  --algorithms mle,raml,mixer,mixer_anneal,pg,scheduled_sampling,interpolation \
  --seeds "$SEEDS" --pretrain-steps "$PRETRAIN_STEPS" --budget-steps "$BUDGET_STEPS" \
  --out "$OUT" --gpus "$GPUS" --reward neg_edit \
  train.eval_every_steps=250 train.lr=0.0003 pretrain:train.lr=0.001
mkdir -p benchmarks/reports/g2p
cp "$OUT"/report/{report.md,report.html,curves.png,space.png,summary.json} benchmarks/reports/g2p/
# per-algorithm means / std / min / max / n and p-values -> benchmarks/results/compare_g2p.json
python - "$OUT" "$COMMAND" <<'PY'
import sys
sys.path.insert(0, "benchmarks")
import results_io
from seqlab.compare.report import benchmark_entries
rows = benchmark_entries(sys.argv[1], "g2p_cmudict", "test")
print(results_io.write("compare_g2p", [results_io.entry(m, v, u, sys.argv[2]) for m, v, u in rows]))
PY
