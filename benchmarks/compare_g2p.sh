#!/usr/bin/env bash
# The ERPO algorithms on English G2P (CMUdict, the built-in g2p-cmudict task): the same seven algorithms as
# the machine-translation table, 5 seeds, one shared MLE checkpoint, the same step budget each.
# Metrics WER / PER (lower is better; WER picks checkpoints); reward = negative edit distance to the
# reference phonemes.  Resumable.  Report -> benchmarks/reports/g2p.
# Environment: OUT, SEEDS, PRETRAIN_STEPS, BUDGET_STEPS, GPUS.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/compare_g2p}
python -m seqlab.cli compare --config configs/g2p_lstm.yaml \
  --algorithms mle,raml,mixer,mixer_anneal,pg,scheduled_sampling,interpolation \
  --seeds "${SEEDS:-1,2,3,4,5}" --pretrain-steps "${PRETRAIN_STEPS:-4000}" --budget-steps "${BUDGET_STEPS:-2000}" \
  --out "$OUT" --gpus "${GPUS:-auto}" --reward neg_edit \
  train.eval_every_steps=250 train.lr=0.0003 pretrain:train.lr=0.001
mkdir -p benchmarks/reports/g2p
cp "$OUT"/report/{report.md,report.html,curves.png,space.png,summary.json} benchmarks/reports/g2p/
