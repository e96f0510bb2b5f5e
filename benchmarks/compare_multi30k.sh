#!/usr/bin/env bash
# The ERPO paper's machine-translation table on Multi30k de->en, produced by one `seqlab compare` call:
# MLE, RAML, MIXER, MIXER-alike anneal, self-critic (pg), scheduled sampling and interpolation, 5 seeds each,
# all fine-tuned from one shared MLE checkpoint with the same step budget (MLE keeps training by MLE).
# The attentional LSTM of configs/multi30k_lstm.yaml; validation BLEU every 250 steps for the curves;
# the reward is sentence BLEU (the algorithms' default).  Resumable: rerun the same command.
# The report goes to benchmarks/reports/multi30k (Markdown + HTML + PNGs + summary.json); the runs
# themselves stay in $OUT; the numbers go to benchmarks/results/compare_multi30k.json.
# Environment: OUT, SEEDS, PRETRAIN_STEPS, BUDGET_STEPS, GPUS, DATA.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/compare_multi30k}
SEEDS=${SEEDS:-1,2,3,4,5}
PRETRAIN_STEPS=${PRETRAIN_STEPS:-3000}
BUDGET_STEPS=${BUDGET_STEPS:-1500}
GPUS=${GPUS:-auto}
COMMAND="SEEDS=$SEEDS PRETRAIN_STEPS=$PRETRAIN_STEPS BUDGET_STEPS=$BUDGET_STEPS bash benchmarks/compare_multi30k.sh"
DATA=${DATA:-../shared/data/multi30k}
python -m seqlab.cli compare --config configs/multi30k_lstm.yaml \
  --algorithms mle,raml,mixer,mixer_anneal,pg,scheduled_sampling,interpolation \
  --seeds "$SEEDS" --pretrain-steps "$PRETRAIN_STEPS" --budget-steps "$BUDGET_STEPS" \
  --out "$OUT" --gpus "$GPUS" \
  "task.options.path=$DATA" train.eval_every_steps=250 train.lr=0.0003 \
  pretrain:train.lr=0.001 \
  pg:algorithm.options.num_samples=4 mixer:algorithm.options.num_samples=4
mkdir -p benchmarks/reports/multi30k
cp "$OUT"/report/{report.md,report.html,curves.png,space.png,summary.json} benchmarks/reports/multi30k/
# per-algorithm means / std / min / max / n and p-values -> benchmarks/results/compare_multi30k.json
python - "$OUT" "$COMMAND" <<'PY'
import sys
sys.path.insert(0, "benchmarks")
import results_io
from seqlab.compare.report import benchmark_entries
rows = benchmark_entries(sys.argv[1], "multi30k_deen", "test2016")
print(results_io.write("compare_multi30k", [results_io.entry(m, v, u, sys.argv[2]) for m, v, u in rows]))
PY
