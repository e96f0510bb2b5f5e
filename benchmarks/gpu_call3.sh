#!/usr/bin/env bash
# GPU call 3: decoding with CUDA graphs (speed, graph-vs-eager equality) and sampling algorithms' step times.
set -u
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
save() { cp benchmarks/results/speed_cuda.json benchmarks/results/step_time_cuda.json "$OUT"/ 2>/dev/null; }
trap save EXIT
D=.devdata/multi30k
timeout 110 python3 -m seqlab.cli train --config configs/multi30k_transformer.yaml run_dir=/tmp/m30s \
  task.options.path=$D train.max_minutes=1.2 train.eval_every_steps=1000000 train.progress_bar=false \
  decode.beam_size=1 train.tensorboard=false 2>&1 | grep -v "it/s\]"
timeout 150 python3 benchmarks/bench_speed.py --data $D --checkpoint /tmp/m30s/checkpoint_last.pt \
  --tokenizers /tmp/m30s/tokenizers --steps 100 --warmup 10 --latency-sentences 100
save
timeout 110 python3 benchmarks/bench_step_time.py --init-from /tmp/m30s/checkpoint_last.pt --tokenizers /tmp/m30s/tokenizers \
  --steps 6 --warmup 1 --algorithms mle,pg,spg,mixer,interpolation,mixer_anneal \
  task.options.path=$D train.progress_bar=false train.tensorboard=false
