"""Which actions does an AC critic prefer on Multi30k, and where does the actor go?  Issue 17's CPU diagnosis.

Stage 1 of the Multi30k credit table saw AC and ERAC collapse within 62 joint steps with the critic's own Q head
(BENCHMARKS.md, Credit assignment).  This script summarises a small CPU reproduction: an MLE Transformer (d 256,
2 + 2 layers, test BLEU 27 greedy, 854 steps on this CPU) as the actor, the table's AC critic (Transformer d 256,
2 + 2, reading the reference) pre-trained 150 steps with the actor fixed, then 40 joint steps of AC at the table's
settings (actor lr 1e-4, Adam β1 0, 1,024-token batches, greedy validation on the first 200 sources every 20 steps).
The runs are plain ``seqlab train`` commands (``configs/multi30k_ac.yaml`` with the overrides below); the critic
variants differ only in ``algorithm.options.var_reduction`` (``mean``, the authors' code; ``sum``, the paper's
formula).

    COMMON="task.options.path=DATA model.options.d_model=256 model.options.n_heads=4 model.options.ffn_dim=1024 \\
      model.options.encoder_layers=2 model.options.decoder_layers=2 model.options.dropout=0.1 \\
      train.init_from=MLE/checkpoint_best.pt train.tokenizers_from=MLE/tokenizers train.device=cpu \\
      train.bf16=false train.max_tokens=1024 train.max_minutes=null train.eval_every_steps=20 \\
      train.eval_max_examples=200 decode.beam_size=1 algorithm.options.critic_eval_every=100 \\
      algorithm.options.critic_patience=null"
    seqlab train --config configs/multi30k_ac.yaml $COMMON run_dir=OUT/critic_mean train.max_steps=1 \\
      algorithm.options.critic_pretrain_steps=150 train.log_every_steps=10          # (+ var_reduction=sum)
    seqlab train --config configs/multi30k_ac.yaml $COMMON run_dir=OUT/joint_mean train.max_steps=40 \\
      train.log_every_steps=5 algorithm.options.critic_pretrain_steps=0 \\
      algorithm.options.critic_from=OUT/critic_mean/checkpoint_last.pt
    # ERAC: configs/multi30k_erac.yaml, the same overrides, the AC critic (critic_from), train.lr=0.00001
    #   algorithm.options.joint_critic_lr_scale=10 [algorithm.options.l2_log_pi=true]
    python benchmarks/critic_preference_cpu.py --start MLE/checkpoint_best.pt --data DATA \\
      --run critic_mean=OUT/critic_mean --run joint_mean=OUT/joint_mean ...

The critic's horizon (issue 17, stage 2): does the critic learn more than the immediate reward?  The critic
pre-trained 150 steps from the lr-1e-5 config (critic at 1e-3), its target critic at the authors' 0.001 per step or
at ``critic_target_beta`` 0.02, comparing the logged ``q_first`` (Q(s_0, a_0): the return the critic predicts for the
whole sample) with the logged ``return``::

    seqlab train --config configs/multi30k_ac.yaml $COMMON run_dir=OUT/horizon_beta0.001 train.max_steps=1 \\
      train.log_every_steps=10 algorithm.options.critic_pretrain_steps=150   # (+ critic_target_beta=0.02)
    python benchmarks/critic_preference_cpu.py --prefix m30k_cpu_critic --run horizon_beta0.001=OUT/... ...

Then 40 joint steps of AC at the stage-1 settings (train.lr=0.0001 algorithm.options.critic_lr_scale=10
algorithm.options.joint_critic_lr_scale=1) from each critic (``critic_from``, ``critic_pretrain_steps=0``), and the
same pair for a critic pre-trained and trained with ``algorithm.options.other_actions_weight=1.0`` (every action's Q
regressed): ``--run joint_beta0.001=... --run joint_beta0.02=... --run other_critic=... --run joint_other=...``.

Entries ``<prefix>_<label>_<quantity>_{first,last}`` (the logged ``q_argmax_is_pi_argmax``, ``pi_of_q_argmax``,
``td_abs``, ``entropy``, ``return``, ``sample_length``, ``q_first``; ``return``, ``q_first`` and ``td_abs`` also
``_mean_last5``), ``<prefix>_<label>_valid200_bleu_step<k>`` and
``<prefix>_start_valid200_bleu`` (the actor before any update, greedy, the same 200 sources) in
``benchmarks/results/<results>.json``.
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

from log_diagnostics import read_log

QUANTITIES = ("q_argmax_is_pi_argmax", "pi_of_q_argmax", "td_abs", "entropy", "return", "sample_length", "q_first")
#: quantities also averaged over the last 5 logged steps (one step's value is noisy)
AVERAGED = ("return", "q_first", "td_abs")


def run_entries(prefix: str, label: str, records: list[dict]) -> list[tuple[str, float, str]]:
    """first / last of each logged quantity over the train records, and every validation BLEU by step."""
    rows = []
    for key in QUANTITIES:
        values = [(r["step"], float(r[key])) for r in records if r.get("kind") == "train" and key in r]
        for end, (step, value) in (("first", values[0]), ("last", values[-1])) if values else ():
            rows.append((f"{prefix}_{label}_{key}_{end}", round(value, 4), f"logged {key} at step {step}"))
        if key in AVERAGED and values:
            late = [v for _, v in values[-5:]]
            unit = f"mean of the logged {key} at steps {values[-len(late)][0]}-{values[-1][0]}"
            rows.append((f"{prefix}_{label}_{key}_mean_last5", round(sum(late) / len(late), 4), unit))
    for r in records:
        if r.get("kind") == "valid" and "bleu" in r:
            rows.append((f"{prefix}_{label}_valid200_bleu_step{r['step']}", round(float(r["bleu"]), 2), "BLEU"))
    return rows


def start_bleu(checkpoint: str, data: Path, n: int) -> float:
    """Greedy BLEU of ``checkpoint`` on the first ``n`` validation sources (the trainer's ``eval_max_examples``)."""
    import sacrebleu

    import seqlab

    def lines(name: str) -> list[str]:
        with gzip.open(data / name, "rt", encoding="utf-8") as f:
            return [line.strip() for line in f][:n]

    model = seqlab.load(checkpoint, device="cpu")
    hyps = model.translate(lines("val.de.gz"), beam_size=1)
    return float(sacrebleu.corpus_bleu(hyps, [lines("val.en.gz")]).score)


def main() -> None:
    from seqlab.bench import results as results_io

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", action="append", default=[], metavar="LABEL=DIR", help="a run folder and its label")
    p.add_argument("--start", help="the actor's checkpoint, scored greedy on the first --n validation sources")
    p.add_argument("--data", type=Path, help="the Multi30k folder (val.de.gz, val.en.gz) for --start")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--prefix", default="m30k_cpu_ac")
    p.add_argument("--results", default="credit_multi30k_cpu")
    args = p.parse_args()
    rows = []
    if args.start:
        if args.data is None:
            p.error("--start needs --data")
        rows.append((f"{args.prefix}_start_valid200_bleu", round(start_bleu(args.start, args.data, args.n), 2), "BLEU"))
    for spec in args.run:
        label, _, folder = spec.partition("=")
        if not folder:
            p.error(f"--run wants LABEL=DIR, got {spec!r}")
        rows += run_entries(args.prefix, label, read_log(Path(folder) / "log.jsonl"))
    for metric, value, _ in rows:
        print(f"{metric:60s} {value}")
    entries = [results_io.entry(metric, value, unit) for metric, value, unit in rows]
    print(f"{len(entries)} entries -> {results_io.write(args.results, entries)}")


if __name__ == "__main__":
    main()
