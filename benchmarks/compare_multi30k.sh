#!/usr/bin/env bash
# The ERPO paper's machine-translation table on Multi30k de->en, produced by one `seqlab compare` call:
# MLE, RAML, MIXER, MIXER-alike anneal, self-critic (pg), scheduled sampling and interpolation, 5 seeds each,
# all fine-tuned from one shared MLE checkpoint with the same step budget (MLE keeps training by MLE).
# The attentional LSTM of configs/multi30k_lstm.yaml; validation BLEU every 250 steps for the curves;
# the reward is sentence BLEU (the algorithms' default).  Resumable: rerun the same command.
# The report goes to benchmarks/reports/multi30k (Markdown + HTML + PNGs + summary.json); the runs
# themselves stay in $OUT.  Environment: OUT, SEEDS, PRETRAIN_STEPS, BUDGET_STEPS, GPUS, DATA.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/compare_multi30k}
DATA=${DATA:-../shared/data/multi30k}
python -m seqlab.cli compare --config configs/multi30k_lstm.yaml \
  --algorithms mle,raml,mixer,mixer_anneal,pg,scheduled_sampling,interpolation \
  --seeds "${SEEDS:-1,2,3,4,5}" --pretrain-steps "${PRETRAIN_STEPS:-3000}" --budget-steps "${BUDGET_STEPS:-1500}" \
  --out "$OUT" --gpus "${GPUS:-auto}" \
  "task.options.path=$DATA" train.eval_every_steps=250 train.lr=0.0003 \
  pretrain:train.lr=0.001 \
  pg:algorithm.options.num_samples=4 mixer:algorithm.options.num_samples=4
mkdir -p benchmarks/reports/multi30k
cp "$OUT"/report/{report.md,report.html,curves.png,space.png,summary.json} benchmarks/reports/multi30k/
