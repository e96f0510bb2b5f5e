#!/usr/bin/env bash
# Issue 19 on one GPU: the captured searches' tests, a 2.5-minute `seqlab train` with train.compile=true (its own
# log gives trainer_tok_per_s; its checkpoint makes decoding realistic), then bench_speed.py side by side with the
# plain loop and BART.  Carry .whl and .devdata (Multi30k in .devdata/multi30k); results land in $OUT.
set -u
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
save() { cp benchmarks/results/speed_cuda.json "$OUT"/ 2>/dev/null; cp /tmp/m30c/log.jsonl "$OUT"/train_log.jsonl 2>/dev/null; }
trap save EXIT
D=.devdata/multi30k
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
timeout 120 python3 -m pytest -q -x tests/test_decoding_static.py 2>&1 | tail -3
timeout ${TRAIN_TIMEOUT:-280} python3 -m seqlab.cli train --config configs/multi30k_transformer.yaml run_dir=/tmp/m30c \
  task.options.path=$D train.compile=true train.max_minutes=${TRAIN_MINUTES:-2.5} train.eval_every_steps=1000000 \
  train.progress_bar=false train.log_every_steps=50 decode.beam_size=1 train.tensorboard=false 2>&1 | tail -25
if [ ! -f /tmp/m30c/checkpoint_last.pt ]; then  # compiled training failed: an eager model for the decoding figures
  echo "compiled training left no checkpoint; training eagerly for 1 minute"
  timeout 120 python3 -m seqlab.cli train --config configs/multi30k_transformer.yaml run_dir=/tmp/m30c \
    task.options.path=$D train.max_minutes=1 train.eval_every_steps=1000000 train.progress_bar=false \
    decode.beam_size=1 train.tensorboard=false train.resume=false 2>&1 | tail -5
fi
timeout ${BENCH_TIMEOUT:-240} python3 benchmarks/bench_speed.py --data $D --checkpoint /tmp/m30c/checkpoint_last.pt \
  --tokenizers /tmp/m30c/tokenizers --steps 100 --warmup 10 --latency-sentences 100
python3 benchmarks/trainer_throughput.py /tmp/m30c --warmup-seconds 30
save
