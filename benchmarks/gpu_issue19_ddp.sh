#!/usr/bin/env bash
# Issue 19 on two GPUs: `seqlab train` alone on GPU 0 (trainer_tok_per_s from its own log, batches copied from
# pinned memory), then bench_ddp.py (MLE and RAML, 1 and 2 GPUs) reusing that run's tokenizers.  Carry .whl and
# .devdata (Multi30k in .devdata/multi30k); results land in $OUT.
set -u
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
save() { cp benchmarks/results/speed_cuda.json benchmarks/results/ddp.json "$OUT"/ 2>/dev/null
         cp /tmp/m30t/log.jsonl "$OUT"/train_log.jsonl 2>/dev/null; }
trap save EXIT
D=.devdata/multi30k
nvidia-smi --query-gpu=name --format=csv,noheader; nvidia-smi topo -m | head -4
CUDA_VISIBLE_DEVICES=0 timeout 200 python3 -m seqlab.cli train --config configs/multi30k_transformer.yaml \
  run_dir=/tmp/m30t task.options.path=$D train.max_minutes=${TRAIN_MINUTES:-1.5} train.eval_every_steps=1000000 \
  train.progress_bar=false train.log_every_steps=50 decode.beam_size=1 train.tensorboard=false 2>&1 | tail -4
python3 benchmarks/trainer_throughput.py /tmp/m30t --warmup-seconds 20
timeout ${DDP_TIMEOUT:-300} python3 benchmarks/bench_ddp.py --algorithms ${ALGOS:-mle,raml} --steps ${STEPS:-200} \
  --log-every 20 --skip-windows 3 --work-dir /tmp/ddp task.options.path=$D train.tokenizers_from=/tmp/m30t/tokenizers
save
