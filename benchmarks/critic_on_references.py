"""What a trained critic prefers along the references themselves (issue 17): a check that needs no actor.

Along a reference y*, the action that earns the most, now and later, is the reference's own next token: it adds
matching n-grams and keeps every later match possible. A critic Q(y*_<t, w; y*) that has learnt the task should
rank y*_t first, and its value of the whole reference, Q(BOS, y*_1), should approach the reference's return (its
sentence-BLEU reward increments summed, times |y*| with ``scale_by_length``, as the runs train). This script reads
critics as the credit runs leave them (a bare state dict in bf16 from ``benchmarks/ckpt_weights.py --critic``, or a
trainer checkpoint; the architecture from the run's config.yaml beside it, else the credit table's critic) and
scores them on the validation references of a task (the CPU is enough):

    python benchmarks/critic_on_references.py --tokenizers RUN/tokenizers --data .devdata/multi30k \\
        --critic beta0.001_lvar0=critics__erac_beta0.001_lvar0__checkpoint_last.pt --critic beta1_lvar0=... \\
        --prefix multi30k_credit_ablation --results critic_references_cpu

Entries ``<prefix>_<label>_refs_<quantity>`` (their device is the machine that scored the critics):
``next_token_top1`` (share of reference positions, EOS included, whose argmax is the reference token),
``next_token_rank_median`` (the reference token's rank, 1 = first), ``q_first_mean`` (Q(BOS, y*_1)),
``return_mean`` (the references' return), ``q_return_to_go_abs_error`` (mean |Q(y*_<t, y*_t) − G_t| with G_t the
reward still to come along the reference) and ``q_spread`` (the mean standard deviation of Q over the vocabulary).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
import yaml

from seqlab.bench import results as results_io
from seqlab.credit.critic import ReferenceCritic, load_critic_state
from seqlab.credit.targets import value_variance
from seqlab.data.vocab import PAD_ID
from seqlab.rewards import reward_increments
from seqlab.tasks.base import load_task
from seqlab.train.evaluate import encode_lines, pad_batch

#: the credit table's critic (benchmarks/suites/multi30k_credit.yaml), where no config.yaml sits beside a checkpoint
CRITIC_OPTIONS = {
    "d_model": 256,
    "n_heads": 4,
    "ffn_dim": 1024,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "dropout": 0.0,
}

UNITS = {
    "next_token_top1": "fraction",
    "next_token_rank_median": "rank",
    **{name: "return" for name in ("q_first_mean", "return_mean", "q_return_to_go_abs_error", "q_spread")},
}


def critic_architecture(path: Path) -> tuple[str, dict]:
    """The critic's architecture and options from the run's ``config.yaml`` beside the checkpoint (as a comparison
    leaves it under ``critics/<label>/``), else the credit table's critic."""
    config = path.parent / "config.yaml"
    if not config.exists():
        return "transformer", CRITIC_OPTIONS
    options = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("algorithm", {}).get("options", {})
    if options.get("critic_reads_source"):
        raise SystemExit(f"{config}: a critic that reads the source is not scored here (references only)")
    return options.get("critic_arch", "transformer"), options.get("critic_options") or CRITIC_OPTIONS


def load_critic(path: Path, vocab_size: int) -> ReferenceCritic:
    critic = ReferenceCritic.build(vocab_size, *critic_architecture(path))
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_critic_state(path).items()}
    critic.load_state_dict(state)
    return critic.eval()


@torch.no_grad()
def reference_stats(critic: ReferenceCritic, refs: torch.Tensor, batch: int = 64) -> dict[str, float]:
    """The quantities of the module docstring over ``refs`` [N, T] (each ending in EOS, then PAD)."""
    top1, ranks, q_first, returns, to_go_err, spread = [], [], [], [], [], []
    for i in range(0, refs.size(0), batch):
        ref = refs[i : i + batch]
        q = critic(ref, ref)  # [n, T, V]: Q(y*_<t, w) along the reference
        valid = ref.ne(PAD_ID)
        taken = q.gather(-1, ref.unsqueeze(-1)).squeeze(-1)
        better = (q > taken.unsqueeze(-1)).sum(-1)  # how many actions the critic values above the reference's
        inc = reward_increments("bleu", ref, ref, scale_by_length=True)  # r_t along the reference
        to_go = inc.flip(-1).cumsum(-1).flip(-1)  # G_t = sum_{k >= t} r_k
        top1 += (better[valid] == 0).float().tolist()
        ranks += (better[valid] + 1).tolist()
        q_first += taken[:, 0].tolist()
        returns += inc.sum(-1).tolist()
        to_go_err += (taken - to_go).abs()[valid].tolist()
        spread += value_variance(q, "mean").sqrt()[valid].tolist()  # over the allowed actions
    return {
        "next_token_top1": statistics.fmean(top1),
        "next_token_rank_median": float(statistics.median(ranks)),
        "q_first_mean": statistics.fmean(q_first),
        "return_mean": statistics.fmean(returns),
        "q_return_to_go_abs_error": statistics.fmean(to_go_err),
        "q_spread": statistics.fmean(spread),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizers", required=True, help="the runs' tokenizers folder (src/, tgt/)")
    p.add_argument("--data", required=True, help="the task's data folder (task.options.path)")
    p.add_argument("--task", default="multi30k")
    p.add_argument("--src-lang", default="de")
    p.add_argument("--tgt-lang", default="en")
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--critic", action="append", required=True, metavar="LABEL=PATH")
    p.add_argument("--max-len", type=int, default=128)
    p.add_argument("--prefix", required=True)
    p.add_argument("--results", default=None, help="benchmarks/results/NAME.json (default: print only)")
    args = p.parse_args()
    options = {"path": args.data, "src_lang": args.src_lang, "tgt_lang": args.tgt_lang, "shared_vocab": True}
    data = load_task(args.task, {**options, "vocab_size": args.vocab_size}, args.tokenizers)
    refs = pad_batch(encode_lines(data.tgt_tokenizer, data.valid.targets, args.max_len), torch.device("cpu"))
    entries = []
    for item in args.critic:
        label, path = item.split("=", 1)
        stats = reference_stats(load_critic(Path(path), data.tgt_tokenizer.vocab_size), refs)
        for name, value in stats.items():
            metric = f"{args.prefix}_{label}_refs_{name}"
            print(f"{metric:70s} {value:.4f}")
            entries.append(results_io.entry(metric, round(value, 4), UNITS[name], results_io.command_line()))
    if args.results:
        print("wrote", results_io.write(args.results, entries))


if __name__ == "__main__":
    main()
