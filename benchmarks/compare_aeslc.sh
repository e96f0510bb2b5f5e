#!/usr/bin/env bash
# The ERPO paper's summarization table, on AESLC (email -> subject line; Gigaword is not available here):
# the paper's attentional LSTM (configs/aeslc_lstm.yaml: 256-dim, Adam 1e-3, batch 64, beam 5), the seven
# algorithms, 5 seeds, one shared MLE checkpoint, the same step budget each.  Reward: ROUGE-1 + ROUGE-2 +
# ROUGE-L (as the paper); test = the AESLC dev split against its 3 annotated references.  Resumable.
# Report -> benchmarks/reports/aeslc, numbers -> benchmarks/results/compare_aeslc.json.
# Environment: OUT, SEEDS, PRETRAIN_STEPS, BUDGET_STEPS, GPUS, DATA.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/compare_aeslc}
SEEDS=${SEEDS:-1,2,3,4,5}
PRETRAIN_STEPS=${PRETRAIN_STEPS:-4000}
BUDGET_STEPS=${BUDGET_STEPS:-2000}
GPUS=${GPUS:-auto}
COMMAND="SEEDS=$SEEDS PRETRAIN_STEPS=$PRETRAIN_STEPS BUDGET_STEPS=$BUDGET_STEPS bash benchmarks/compare_aeslc.sh"
DATA=${DATA:-../shared/data/aeslc}
python -m seqlab.cli compare --config configs/aeslc_lstm.yaml \
  --algorithms mle,raml,mixer,mixer_anneal,pg,scheduled_sampling,interpolation \
  --seeds "$SEEDS" --pretrain-steps "$PRETRAIN_STEPS" --budget-steps "$BUDGET_STEPS" \
  --out "$OUT" --gpus "$GPUS" --reward rouge \
  "task.options.path=$DATA" "task.options.data_dir=$OUT/data_cache/aeslc" \
  train.eval_every_steps=250 train.lr=0.0003 pretrain:train.lr=0.001
mkdir -p benchmarks/reports/aeslc
cp "$OUT"/report/{report.md,report.html,curves.png,space.png,summary.json} benchmarks/reports/aeslc/
# per-algorithm means / std / min / max / n and p-values -> benchmarks/results/compare_aeslc.json
python - "$OUT" "$COMMAND" <<'PY'
import sys
sys.path.insert(0, "benchmarks")
import results_io
from seqlab.compare.report import benchmark_entries
rows = benchmark_entries(sys.argv[1], "aeslc", "dev")
print(results_io.write("compare_aeslc", [results_io.entry(m, v, u, sys.argv[2]) for m, v, u in rows]))
PY
