"""What the interpolation algorithm's reward draw does on real references with the real vocabulary.

For every on-track prefix y*_<t (t = 1 .. m-1) of the first N validation references of a task, the draw
p(w) ∝ exp(c · ΔR(w | y*_<t, y*)) over the target vocabulary is computed exactly, with ΔR (sentence-BLEU
increments, or ``--reward``'s) in each of the units of ``seqlab.erpo.proposals.REWARD_UNITS``.  Reported per unit
and c: the probability that the draw lands on a token of the
reference's remaining part (positions ≥ t, its n-grams' tokens), on the reference's next token, and the
draw's entropy against log V.  This is how ``reward_scale``'s default was chosen (README, "Decisions").

    python benchmarks/reward_draw.py --config configs/multi30k_transformer.yaml \
        task.options.path=../shared/data/multi30k --scales 1,3,10,30,100,300 --out reward_draw_multi30k
    python benchmarks/reward_draw.py --config configs/aeslc_lstm.yaml --reward rouge --prefix aeslc_reward_draw \
        task.options.path=../shared/data/aeslc --out reward_draw_aeslc
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from seqlab.bench import results as results_io
from seqlab.config import load_config
from seqlab.data.tasks import load_task
from seqlab.data.vocab import EOS_ID, PAD_ID
from seqlab.erpo.proposals import reward_draw_logits
from seqlab.rewards import next_token_rewards


def references(cfg, n: int, cache: Path) -> tuple[torch.Tensor, int]:
    task = load_task(cfg.task.name, cfg.task.options, cache)
    ids = task.tgt_tokenizer.encode_batch(task.valid.targets[:n])
    width = max(map(len, ids)) + 1
    refs = torch.full((len(ids), width), PAD_ID, dtype=torch.long)
    for i, row in enumerate(ids):
        refs[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        refs[i, len(row)] = EOS_ID
    return refs, task.tgt_tokenizer.vocab_size


def measure(
    refs: torch.Tensor, vocab_size: int, scales: list[float], unit: str, reward: str = "bleu"
) -> dict[float, dict[str, float]]:
    lengths = refs.ne(PAD_ID).sum(1) - 1
    sums = {c: {"in_remaining": 0.0, "next": 0.0, "entropy": 0.0} for c in scales}
    early = {c: {} for c in scales}  # position t -> mean P(in remaining), t = 1..5
    count = 0
    for t in range(1, int(lengths.max())):
        rows = (lengths > t).nonzero().squeeze(1)  # on-track prefixes with at least one token left
        ref = refs.index_select(0, rows)
        delta = next_token_rewards(reward, ref[:, :t], ref, vocab_size)  # [n, V]
        remaining = torch.zeros_like(delta, dtype=torch.bool)
        body = ref[:, t:].masked_fill(ref[:, t:].eq(EOS_ID), PAD_ID)
        remaining.scatter_(1, body, True)
        remaining[:, PAD_ID] = False
        nxt = ref[:, t]
        for c in scales:
            probs = reward_draw_logits(delta, c, unit, ref).softmax(-1)
            hit = (probs * remaining).sum(1)
            sums[c]["in_remaining"] += float(hit.sum())
            if t <= 5:
                early[c][t] = float(hit.mean())
            sums[c]["next"] += float(probs.gather(1, nxt[:, None]).sum())
            sums[c]["entropy"] += float(-(probs * probs.clamp_min(1e-30).log()).sum())
        count += len(rows)
    return {c: {k: v / count for k, v in s.items()} | {"prefixes": count, "early": early[c]} for c, s in sums.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--n", type=int, default=500, help="validation references")
    p.add_argument("--scales", default="1,3,10,30,100,300")
    p.add_argument("--units", default="range,length,raw")
    p.add_argument("--cache", default="runs/reward_draw_tokenizers")
    p.add_argument("--out", default=None, help="benchmarks/results/<out>.json for the entries")
    p.add_argument("--prefix", default="multi30k_reward_draw")
    p.add_argument("--reward", default="bleu", help="the sequence reward whose increments the draw uses (e.g. rouge)")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    cfg = load_config(args.config, args.overrides)
    refs, vocab = references(cfg, args.n, Path(args.cache))
    scales = [float(s) for s in args.scales.split(",")]
    entries = []
    print(f"{len(refs)} references, V = {vocab}, log V = {math.log(vocab):.2f}")
    for unit in args.units.split(","):
        for c, r in measure(refs, vocab, scales, unit, args.reward).items():
            print(
                f"unit {unit:10s} c {c:6g}: in remaining {r['in_remaining']:.3f}  next {r['next']:.3f}  "
                f"entropy {r['entropy']:.2f}  ({r['prefixes']} prefixes); in remaining at t = 1..5: "
                + " ".join(f"{v:.2f}" for v in r["early"].values())
            )
            tag = f"{args.prefix}_{unit}_c{c:g}".replace(".", "p")
            entries += [
                results_io.entry(f"{tag}_in_remaining", round(r["in_remaining"], 4), "fraction"),
                results_io.entry(f"{tag}_next_token", round(r["next"], 4), "fraction"),
                results_io.entry(f"{tag}_entropy", round(r["entropy"], 3), "nats"),
            ]
            entries += [
                results_io.entry(f"{tag}_in_remaining_t{t}", round(v, 4), "fraction") for t, v in r["early"].items()
            ]
    if args.out:
        print(results_io.write(args.out, entries))


if __name__ == "__main__":
    main()
