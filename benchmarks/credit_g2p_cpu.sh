#!/usr/bin/env bash
# A reduced CPU check of ERAC's collapse and of the critic's regression on the actions not sampled
# (algorithm.options.other_actions_weight, docs/credit.md), on G2P: the actor is the shared MLE checkpoint of
# the reduced CPU comparison (benchmarks/compare_g2p_cpu.sh: Transformer d 128, 2+2, 800 steps), the critic
# a 1+1-layer d 64 Transformer reading the reference; reward = negative edit distance (per-token increments),
# 2 samples per source, critic at 10x the actor's lr; CRITIC_STEPS of critic pre-training, then joint training
# until STEPS, validation WER (greedy, 300 words) every 25 steps.  One run per LAMBDA; resumable.
# Environment: CMP (the comparison's folder), OUT, LR, CRITIC_STEPS, STEPS, LAMBDAS.
# Entries -> benchmarks/results/credit_g2p_cpu.json.
set -euo pipefail
cd "$(dirname "$0")/.."
CMP=${CMP:-runs/compare_g2p_cpu}
OUT=${OUT:-runs/credit_g2p_cpu}
LR=${LR:-0.0001}
CRITIC_STEPS=${CRITIC_STEPS:-300}
STEPS=${STEPS:-400}
LAMBDAS=${LAMBDAS:-"0.0 1.0"}
TAG="lr${LR}_critic${CRITIC_STEPS}"
COMMAND="CMP=$CMP LR=$LR CRITIC_STEPS=$CRITIC_STEPS STEPS=$STEPS LAMBDAS='$LAMBDAS' bash benchmarks/credit_g2p_cpu.sh"
pids=()
for lam in $LAMBDAS; do
  OMP_NUM_THREADS=1 python -m seqlab.cli train --config "$CMP/task.yaml" run_dir="$OUT/${TAG}_other$lam" \
    train.init_from="$CMP/pretrain/checkpoint_best.pt" train.tokenizers_from="$CMP/pretrain/tokenizers" \
    algorithm.name=erac "algorithm.options={reward: neg_edit, scale_by_length: false, num_samples: 2,
      critic_pretrain_steps: $CRITIC_STEPS, critic_lr_scale: 10, other_actions_weight: $lam,
      critic_options: {d_model: 64, n_heads: 4, ffn_dim: 256, encoder_layers: 1, decoder_layers: 1, dropout: 0.0}}" \
    train.lr="$LR" train.scheduler=constant train.max_steps="$STEPS" train.eval_every_steps=25 \
    train.log_every_steps=25 train.progress_bar=false train.save_every_steps=100 > "$OUT/${TAG}_other$lam.log" 2>&1 &
  pids+=($!)
done
wait "${pids[@]}"
python - "$OUT" "$TAG" "$COMMAND" "$LAMBDAS" <<'PY'
import json, sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
import results_io
out, tag, command, lambdas = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4].split()
entries = []
for lam in lambdas:
    rows = [json.loads(line) for line in (out / f"{tag}_other{lam}" / "log.jsonl").read_text().splitlines()]
    name = f"g2p_cpu_erac_{tag}_other{lam}".replace(".", "p")
    for r in rows:
        if r["kind"] == "valid":
            entries.append(results_io.entry(f"{name}_valid_wer_step{r['step']}", round(r["wer"], 2), "WER", command))
        if r["kind"] == "train" and r["step"] % 100 == 0:
            for key in ("return", "entropy", "td_abs"):
                entries.append(results_io.entry(f"{name}_{key}_step{r['step']}", round(r[key], 4), key, command))
print(results_io.write("credit_g2p_cpu", entries))
PY
