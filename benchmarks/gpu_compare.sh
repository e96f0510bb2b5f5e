#!/usr/bin/env bash
# Device calls for the ERPO comparisons (issues 3 and 6) on one GPU, resumable across 10-minute calls.
#
#   SEQLAB_COMMIT=<hash> TASKS="m30k g2p" REWARDS=1 STEP_TIMES=1 DEADLINE=570 bash benchmarks/gpu_compare.sh
#
# m30k: Multi30k de->en, the Transformer of configs/multi30k_transformer.yaml, one shared MLE checkpoint
#       (4000 steps), then 11 algorithms x seeds 1-3, 200 steps each (constant lr 2e-4), four runs at once.
#       PG, SPG and MIXER learn from their own samples and collapse at 2e-4 (BENCHMARKS.md): they run at 2e-5,
#       and need > 25 GB each (SLOTS_M30K=2 once only they are left).  Session 2's runs of those three at 2e-4
#       are moved aside below, so that every run of a label has the same settings.
# g2p:  CMUdict G2P, configs/g2p_transformer.yaml, MLE 5000 steps, then the same algorithms, 300 steps each.
# State: .devdata/cmp/<task> (carried in; the shared checkpoint as bf16 weights, see ckpt_weights.py) is
# continued in /tmp/cmp/<task> (GPU_SHARE / GPU_SHARE_G2P: the share of the GPU's memory its runs may hold);
# what comes back is $OUT/<task>.tar (no checkpoints but the shared one,
# split in 15 MiB parts), the reports, and the JSON results.  Every stage has a time limit; DEADLINE (s)
# bounds the whole call.
set -u
T0=$(date +%s)
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
TASKS=${TASKS:-m30k}; DEADLINE=${DEADLINE:-570}
W=/tmp/cmp; mkdir -p $W
[ -d .devdata/cmp ] && cp -r .devdata/cmp/. $W/
for a in pg spg mixer; do  # run at lr 2e-4 in session 2 (collapsed); kept in benchmarks/reports/multi30k_transformer
  [ -d $W/m30k/runs/$a ] && ! grep -qs "train.lr=0.00002" $W/m30k/runs/$a/seed*/train.out && rm -rf $W/m30k/runs/$a
done
left() { echo $(( DEADLINE - $(date +%s) + T0 )); }
D=.devdata/multi30k
ALGOS=mle,noising,raml,alpha_dimt,erpo,spg,pg,mixer,mixer_anneal,scheduled_sampling,interpolation
FINETUNE="train.max_minutes=null train.scheduler=constant train.lr=0.0002 train.warmup_steps=20
  pretrain:train.scheduler=inverse_sqrt pretrain:train.lr=0.001 pretrain:train.warmup_steps=1000
  pretrain:train.eval_every_steps=1000 erpo:algorithm.options.alpha=0.2 erpo:algorithm.options.beta=0.4
  pg:train.lr=0.00002 spg:train.lr=0.00002 mixer:train.lr=0.00002"
args_m30k() {
  echo --config configs/multi30k_transformer.yaml --algorithms $ALGOS --seeds ${SEEDS_M30K:-1,2,3} \
    --pretrain-steps 4000 --budget-steps 200 --out $W/m30k --runs-per-gpu ${SLOTS_M30K:-4} \
    ${GPU_SHARE:+--gpu-memory-share $GPU_SHARE} \
    task.options.path=$D train.eval_every_steps=50 $FINETUNE
}
args_g2p() {
  echo --config configs/g2p_transformer.yaml --algorithms $ALGOS --seeds ${SEEDS_G2P:-1,2,3} \
    --pretrain-steps 5000 --budget-steps 300 --out $W/g2p --runs-per-gpu ${SLOTS_G2P:-5} --reward neg_edit \
    ${GPU_SHARE_G2P:+--gpu-memory-share $GPU_SHARE_G2P} \
    train.eval_every_steps=100 $FINETUNE
}
save() {
  cp benchmarks/results/*cuda*.json "$OUT"/ 2>/dev/null
  cp -r /tmp/profile "$OUT"/ 2>/dev/null
  for t in $TASKS; do
    [ -d $W/$t ] || continue
    timeout 60 python3 -m seqlab.cli compare --report-only --out $W/$t > /dev/null 2>&1
    tar -C $W -cf "$OUT/$t.tar" --exclude='*.pt' --exclude='*.pt.full' --exclude='runs/*/seed*/tokenizers' $t
    if [ -f $W/$t/pretrain/checkpoint_best.pt ]; then
      split -b 15M $W/$t/pretrain/checkpoint_best.pt "$OUT/$t.ckpt.part"
    fi
  done
  ls -la "$OUT"
}
trap save EXIT

if [ "${REWARDS:-0}" = 1 ]; then
  timeout 45 python3 benchmarks/bench_rewards.py --device cuda --data $D
fi
# the shared MLE checkpoints (skipped when carried in), rounded to bf16 before any run starts from them
for t in $TASKS; do
  timeout $(( $(left) - 30 )) python3 -m seqlab.cli compare --pretrain-only $(args_$t) > $W/$t.pretrain.log 2>&1 &
done
wait
for t in $TASKS; do
  tail -3 $W/$t.pretrain.log
  [ -f $W/$t/pretrain/checkpoint_best.pt ] && python3 benchmarks/ckpt_weights.py $W/$t/pretrain/checkpoint_best.pt
done
if [ "${STEP_TIMES:-0}" = 1 ] && [ -f $W/m30k/pretrain/checkpoint_best.pt ]; then
  timeout 120 python3 benchmarks/bench_step_time.py --config configs/multi30k_transformer.yaml \
    --init-from $W/m30k/pretrain/checkpoint_best.pt --tokenizers $W/m30k/pretrain/tokenizers \
    --steps 8 --warmup 2 --algorithms ${STEP_ALGOS:-mle,alpha_dimt,erpo,pg,interpolation} --profile /tmp/profile \
    task.options.path=$D train.progress_bar=false train.tensorboard=false
fi
for t in $TASKS; do
  timeout $(( $(left) - 20 )) python3 -m seqlab.cli compare $(args_$t) > $W/$t.compare.log 2>&1 &
done
wait
pkill -f "seqlab.compare train" 2>/dev/null
sleep 2
for t in $TASKS; do grep -E "^\[compare\] (done|failed)" $W/$t.compare.log | tail -40; done
echo "elapsed $(( $(date +%s) - T0 )) s"
