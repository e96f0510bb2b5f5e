#!/usr/bin/env bash
# Benchmark workloads side by side on one GPU, across several 10-minute device calls on a machine kept warm
# between them (the work runs in the background, in its own process session).  Every call must carry .whl and
# .devdata (paths not carried are removed on the device):
#
#   SEQLAB_COMMIT=<hash> bash benchmarks/gpu_session.sh start 540   # launch, wait up to 540 s, snapshot
#   SEQLAB_COMMIT=<hash> bash benchmarks/gpu_session.sh wait 540    # wait up to 540 s (or until done), snapshot
#   SEQLAB_COMMIT=<hash> bash benchmarks/gpu_session.sh finish      # stop what still trains, then measure alone
#
# WORKLOADS (default "credit erpo"):
#   nat     issue 5: bench_nat.py, both pairs, demonstrators 2000 steps, every NAT row NAT_STEPS steps (default
#           1000, as measured in session 3; e.g. NAT_STEPS=1000,2000,3000 NAT_JOBS=12 NAT_SHARE=0.95 on an H200 with
#           WORKLOADS=nat: all twelve rows side by side, in stages); only .devdata/multi30k is needed
#   credit  issue 4: bench_credit.py from the ERPO benchmarks' MLE checkpoint, 200 steps per run (the ERPO
#           budget), critics pre-trained 500 steps (one per algorithm), 3 seeds, the beta x lambda_var ablation;
#           finished runs carried in .devdata/credit are kept
#   erpo    issues 3 and 6: gpu_compare.sh (TASKS, default "m30k g2p"): what is left of the Multi30k comparison
#           and the G2P one
# Each workload holds a fixed share of the GPU's memory.  "finish" evaluates the NAT rows (BLEU, batch-1
# latencies) and times the credit algorithms' steps with the GPU to itself.  State lives in /tmp/session;
# what comes back is $OUT/*.tar (no checkpoints) and the JSON results.
set -u
MODE=${1:?start|wait|finish}; LIMIT=${2:-540}
T0=$(date +%s)
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
W=/tmp/session; mkdir -p $W
D=.devdata/multi30k
MLE=.devdata/cmp/m30k/pretrain/checkpoint_best.pt
WORKLOADS=${WORKLOADS:-credit erpo}
NEED=$D; [ "$WORKLOADS" != nat ] && NEED=$MLE
[ -e $NEED ] && [ -d .whl ] || { echo "carry .whl and .devdata (every call: paths not carried are removed)"; exit 2; }

# NAT_STEPS: one step budget per row, or increasing stages (each kept and scored; the report is the last one done)
NAT_ARGS="--data $D --work $W/nat --teacher-steps 2000 --teacher-minutes 30 --nat-steps ${NAT_STEPS:-1000}
  --nat-minutes 60 --nat-override train.warmup_steps=400 --jobs-per-gpu ${NAT_JOBS:-4}
  --gpu-memory-share ${NAT_SHARE:-0.28} --latency-pair en-de"
CREDIT_ARGS="--mle-checkpoint $MLE --work-dir $W/credit --steps 200 --minutes 30 --critic-steps 500
  --seeds 1,2,3 --share-critic --ablation --eval-every 100 task.options.path=$D"

launch() {  # name, command...: in its own process session, so that it outlives this call
  local name=$1; shift
  setsid nohup "$@" > $W/$name.log 2>&1 < /dev/null &
  echo $! > $W/$name.pid
  echo "launched $name (pid $!)"
}
running() { for n in nat credit erpo; do [ -f $W/$n.pid ] && kill -0 "$(cat $W/$n.pid)" 2>/dev/null && echo $n; done; }

snapshot() {
  cp benchmarks/results/*cuda*.json "$OUT"/ 2>/dev/null
  for t in m30k g2p; do
    [ -d /tmp/cmp/$t ] && timeout 60 python3 -m seqlab.cli compare --report-only --out /tmp/cmp/$t > /dev/null 2>&1
  done
  tar -C $W -cf "$OUT/session.tar" --exclude='*.pt' --exclude='tensorboard' --exclude='*.pt.full' \
    --exclude='train.src' --exclude='train.tgt' --exclude='erpo_out' --exclude='tokenizers' --exclude='*.hyp.txt' \
    --exclude='*.src' --exclude='*.tgt' .
  for t in m30k g2p; do
    [ -d /tmp/cmp/$t ] && tar -C /tmp/cmp -cf "$OUT/$t.tar" --exclude='*.pt' --exclude='tensorboard' \
      --exclude='runs/*/seed*/tokenizers' $t
  done
  nvidia-smi --query-gpu=memory.used,memory.total,utilization.gpu --format=csv,noheader
  echo "still running: $(running | tr '\n' ' ')"
  ls -la "$OUT"
}

case $MODE in
start)
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  [ -d .devdata/credit ] && [ ! -d $W/credit ] && cp -r .devdata/credit $W/credit
  for w in $WORKLOADS; do case $w in
    nat) launch nat python3 benchmarks/bench_nat.py $NAT_ARGS --train-only ;;
    credit) launch credit python3 benchmarks/bench_credit.py $CREDIT_ARGS --jobs 5 --gpu-memory-share 0.35 \
      --skip-step-time ;;
    erpo) launch erpo env OUT=$W/erpo_out TASKS="${TASKS:-m30k g2p}" SLOTS_M30K=3 SLOTS_G2P=4 GPU_SHARE=0.40 \
      GPU_SHARE_G2P=0.15 DEADLINE=1500 bash benchmarks/gpu_compare.sh ;;
  esac; done
  ;&
wait)
  while [ -n "$(running)" ] && [ $(( $(date +%s) - T0 )) -lt $(( LIMIT - 40 )) ]; do sleep 10; done
  for n in $WORKLOADS; do tail -n 2 $W/$n.log; done
  ;;
finish)
  for n in $(running); do kill -- -"$(cat $W/$n.pid)" 2>/dev/null && echo "stopped $n"; done
  sleep 3
  [[ " $WORKLOADS " == *" nat "* ]] && timeout 300 python3 benchmarks/bench_nat.py $NAT_ARGS --evaluate-only \
    --deadline-minutes 4.5
  [[ " $WORKLOADS " == *" credit "* ]] && timeout 200 python3 benchmarks/bench_credit.py $CREDIT_ARGS --collect-only \
    --step-time-steps 20
  ;;
esac
snapshot
echo "elapsed $(( $(date +%s) - T0 )) s"
