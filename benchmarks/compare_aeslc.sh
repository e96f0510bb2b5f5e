#!/usr/bin/env bash
# The ERPO paper's summarization table, on AESLC (email -> subject line; Gigaword is not available here):
# the paper's attentional LSTM (configs/aeslc_lstm.yaml: 256-dim, Adam 1e-3, batch 64, beam 5), the seven
# algorithms, 5 seeds, one shared MLE checkpoint, the same step budget each.  Reward: ROUGE-1 + ROUGE-2 +
# ROUGE-L (as the paper); test = the AESLC dev split against its 3 annotated references.  Resumable.
# Report -> benchmarks/reports/aeslc.  Environment: OUT, SEEDS, PRETRAIN_STEPS, BUDGET_STEPS, GPUS, DATA.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/compare_aeslc}
DATA=${DATA:-../shared/data/aeslc}
python -m seqlab.cli compare --config configs/aeslc_lstm.yaml \
  --algorithms mle,raml,mixer,mixer_anneal,pg,scheduled_sampling,interpolation \
  --seeds "${SEEDS:-1,2,3,4,5}" --pretrain-steps "${PRETRAIN_STEPS:-4000}" --budget-steps "${BUDGET_STEPS:-2000}" \
  --out "$OUT" --gpus "${GPUS:-auto}" --reward rouge \
  "task.options.path=$DATA" "task.options.data_dir=$OUT/data_cache/aeslc" \
  train.eval_every_steps=250 train.lr=0.0003 pretrain:train.lr=0.001
mkdir -p benchmarks/reports/aeslc
cp "$OUT"/report/{report.md,report.html,curves.png,space.png,summary.json} benchmarks/reports/aeslc/
