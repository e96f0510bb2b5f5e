#!/usr/bin/env bash
# GPU figures, second device call: G2P full-size quality; a short Multi30k MLE model for the speed benchmark
# (warm-pass timing) and the per-algorithm step times.  Needs .devdata/multi30k and .whl (see gpu_foundation.sh).
set -u
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
save() { cp benchmarks/results/*.json "$OUT"/ 2>/dev/null; cp /tmp/g2p/log.jsonl "$OUT"/g2p_log.jsonl 2>/dev/null; }
trap save EXIT
D=.devdata/multi30k
timeout 250 python3 benchmarks/bench_quality.py --config configs/g2p_transformer.yaml --name g2p --run-dir /tmp/g2p \
  train.max_minutes=2.5 train.progress_bar=false train.eval_every_steps=2000
save
timeout 120 python3 -m seqlab.cli train --config configs/multi30k_transformer.yaml run_dir=/tmp/m30s \
  task.options.path=$D train.max_minutes=1.3 train.eval_every_steps=1000000 train.progress_bar=false decode.beam_size=1
timeout 130 python3 benchmarks/bench_speed.py --data $D --checkpoint /tmp/m30s/checkpoint_last.pt \
  --tokenizers /tmp/m30s/tokenizers --steps 120 --warmup 10 --latency-sentences 100
save
timeout 90 python3 benchmarks/bench_step_time.py --init-from /tmp/m30s/checkpoint_last.pt --tokenizers /tmp/m30s/tokenizers \
  --steps 6 --warmup 1 --algorithms mle,noising,raml,alpha_dimt,scheduled_sampling,interpolation,mixer_anneal,mixer,erpo,spg,pg \
  task.options.path=$D train.progress_bar=false
