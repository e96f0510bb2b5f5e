#!/usr/bin/env bash
# The reduced CPU comparison on G2P (BENCHMARKS.md, "Reduced comparison on the CPU"): all 11 ERPO-family
# algorithms x 3 seeds on a 2-core CPU, one shared MLE checkpoint (800 steps), 200 steps per run, a small
# Transformer (d 128, 2+2) on 20K CMUdict words, greedy decoding, reward = negative edit distance.
# Not the issue's GPU benchmark (benchmarks/compare_g2p.sh is).  Resumable: rerun the same command.
# Report -> docs/compare_g2p_cpu; numbers -> benchmarks/results/compare_g2p_cpu_reduced.json.
# Environment: OUT, SEEDS, REPORT_ONLY (set: only rewrite the report and the entries from finished runs).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/compare_g2p_cpu}
SEEDS=${SEEDS:-1,2,3}
COMMAND="OUT=$OUT SEEDS=$SEEDS bash benchmarks/compare_g2p_cpu.sh"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} python -m seqlab.cli compare --config configs/g2p_transformer.yaml \
  --algorithms mle,noising,raml,alpha_dimt,erpo,spg,pg,mixer,mixer_anneal,scheduled_sampling,interpolation \
  --seeds "$SEEDS" --pretrain-steps 800 --budget-steps 200 --out "$OUT" --gpus none --reward neg_edit ${REPORT_ONLY:+--report-only} \
  task.options.max_train=20000 task.options.valid_percent=1 task.options.test_percent=1 \
  "model.options={d_model: 128, n_heads: 4, ffn_dim: 512, encoder_layers: 2, decoder_layers: 2, dropout: 0.1}" \
  train.device=cpu train.max_tokens=3000 train.eval_every_steps=100 train.eval_max_examples=300 \
  train.tensorboard=false pretrain:train.lr=0.002 pretrain:train.warmup_steps=300 train.progress_bar=false \
  decode.beam_size=1 erpo:algorithm.options.alpha=0.2 erpo:algorithm.options.beta=0.4
mkdir -p docs/compare_g2p_cpu
cp "$OUT"/report/{report.md,report.html,curves.png,space.png,summary.json} docs/compare_g2p_cpu/
python - "$OUT" "$COMMAND" <<'PY'
import sys
sys.path.insert(0, "benchmarks")
import results_io
from seqlab.compare.report import benchmark_entries
rows = benchmark_entries(sys.argv[1], "g2p_cpu_reduced", "test")
print(results_io.write("compare_g2p_cpu_reduced", [results_io.entry(m, v, u, sys.argv[2]) for m, v, u in rows]))
PY
