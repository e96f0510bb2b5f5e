"""Does a critic prefer "repeat the previous token"?  The diagnosis of issue 15 on real G2P data.

Takes the shared MLE checkpoint of a G2P comparison (``benchmarks/credit_g2p_cpu.py``), samples from it on the
validation words, and reports for the states y_<t (t >= 1) of those samples: the share where the critic's argmax_w
Q(y_<t, w) is the previous token y_{t-1}, the mean of Q(previous token) minus the mean Q over the vocabulary, and
the mean spread (standard deviation over the vocabulary) of Q; for a freshly built critic and after ``--steps``
critic-only steps (the actor fixed, lr 1e-3, as in the credit check).  Three critics, all the driver's critic
(Transformer d 64, 1+1 layers, reading the reference, no dropout):

* ``tied``: the model's own output layer read as Q (tied to its input embeddings): the critic before issue 15;
* ``head0``: the critic's own Q head, zero-initialised (the default);
* ``head01``: the critic's own Q head, U(-0.1, 0.1) as in the authors' code.

    OMP_NUM_THREADS=1 python benchmarks/critic_prev_token.py --compare runs/credit_g2p_cpu --steps 150

Entries ``g2p_cpu_critic_<critic>_prev_argmax_share_step<k>`` (and ``_prev_minus_mean_``, ``_spread_``) in
``benchmarks/results/credit_g2p_<device>.json``.  Any comparison's pre-training works (``--reward``, ``--prefix``
and ``--results`` name the task), e.g. Multi30k with the BLEU reward:

    python benchmarks/critic_prev_token.py --compare DIR --reward bleu --prefix multi30k_cpu \
        --results credit_multi30k_cpu
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from credit_g2p_cpu import CRITIC  # noqa: E402

from seqlab.algorithms.base import AlgorithmContext, Progress, build_algorithm
from seqlab.bench import results as results_io
from seqlab.config import load_config
from seqlab.credit.critic import ReferenceCritic, frozen_copy
from seqlab.credit.targets import value_variance
from seqlab.data.batching import collate
from seqlab.data.vocab import PAD_ID
from seqlab.train.trainer import Trainer

CRITICS = {"tied": None, "head0": 0.0, "head01": 0.1}


@torch.no_grad()
def previous_token_stats(algo, model, batches: list) -> dict[str, float]:
    """Over the states y_<t (t >= 1) of one actor sample per validation word."""
    share, gap, spread, pi_prev, n = 0.0, 0.0, 0.0, 0.0, 0
    algo.critic.eval()
    for batch in batches:
        tokens, group, log_pi = algo.actor_pass(model, batch.src, grad=False, num_samples=algo.num_samples)
        q = algo.q_values(batch.tgt.index_select(0, group), tokens, batch.src.index_select(0, group))
        q_next, prev, valid = q[:, 1:], tokens[:, :-1], tokens[:, 1:].ne(PAD_ID)
        allowed = torch.isfinite(q_next)
        mean_q = torch.where(allowed, q_next, torch.zeros_like(q_next)).sum(-1) / allowed.sum(-1)
        q_prev = q_next.gather(-1, prev.unsqueeze(-1)).squeeze(-1)
        share += float((q_next.argmax(-1) == prev)[valid].sum())
        gap += float((q_prev - mean_q)[valid].sum())
        spread += float(value_variance(q_next, "mean").sqrt()[valid].sum())
        pi_prev += float(log_pi[:, 1:].exp().gather(-1, prev.unsqueeze(-1)).squeeze(-1)[valid].sum())
        n += int(valid.sum())
    algo.critic.train()
    return {
        "prev_argmax_share": share / n,
        "prev_minus_mean": gap / n,
        "spread": spread / n,
        "actor_pi_prev": pi_prev / n,
        "states": n,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compare", default="runs/credit_g2p_cpu", help="a finished pre-training of credit_g2p_cpu")
    ap.add_argument("--steps", type=int, default=150, help="critic-only steps before the second measurement")
    ap.add_argument("--examples", type=int, default=300, help="validation words sampled")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-export", action="store_true")
    ap.add_argument("--reward", default="neg_edit", help="the critic's reward (neg_edit for G2P, bleu for MT)")
    ap.add_argument("--prefix", default="g2p_cpu", help="entries <prefix>_critic_<critic>_<metric>_step<k>")
    ap.add_argument("--results", help="results file name (default credit_g2p_<device>)")
    ap.add_argument("--critics", default=",".join(CRITICS), help=f"which of {', '.join(CRITICS)}")
    args = ap.parse_args()
    pre = Path(args.compare) / "pretrain"
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(
            pre / "config.yaml",
            [
                f"run_dir={tmp}",
                f"train.init_from={pre / 'checkpoint_best.pt'}",
                f"train.tokenizers_from={pre / 'tokenizers'}",
                f"train.device={args.device}",
                "train.tensorboard=false",
                f"train.seed={args.seed}",
            ],
        )
        trainer = Trainer(cfg, console=False)
        model, tc = trainer.model, cfg.train
        batches, seen = [], 0
        for b in trainer._valid_batches():
            batches.append(b)
            seen += b.src.size(0)
            if seen >= args.examples:
                break
        ctx = AlgorithmContext(
            vocab_size=trainer.task.tgt_tokenizer.vocab_size,
            label_smoothing=tc.label_smoothing,
            device=trainer.device,
            tgt_tokenizer=trainer.task.tgt_tokenizer,
        )
        results: dict[str, dict[int, dict[str, float]]] = {}
        for name, head_init in [(c, CRITICS[c]) for c in args.critics.split(",") if c]:
            torch.manual_seed(args.seed)
            options = {
                "reward": args.reward,
                "scale_by_length": False,
                "num_samples": 2,
                "critic_patience": None,
                "critic_pretrain_steps": 10**9,
                "critic_options": CRITIC,
                "critic_head_init": head_init or 0.0,
            }
            algo = build_algorithm("erac", ctx, options).to(trainer.device)
            if head_init is None:  # the model's tied output layer as Q
                algo.critic = ReferenceCritic(algo.critic.net, algo.critic.vocab_size, q_head=False)
                algo.target_critic = frozen_copy(algo.critic)
            algo.to(trainer.device)
            opt = torch.optim.Adam(algo.critic.parameters(), lr=1e-3)
            results[name] = {0: previous_token_stats(algo, model, batches)}
            step = 0
            while step < args.steps:
                for indices in trainer.sampler:
                    batch = collate(trainer.train_data, indices).to(trainer.device)
                    loss, _ = algo.loss(model, batch, Progress(step=step))
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(algo.critic.parameters(), tc.clip_norm or 5.0)
                    opt.step()
                    step += 1
                    algo.on_step_end(Progress(step=step))
                    if step >= args.steps:
                        break
            results[name][args.steps] = previous_token_stats(algo, model, batches)
            for k, r in results[name].items():
                print(f"{name:7s} step {k:4d}: " + ", ".join(f"{m} {v:.4g}" for m, v in r.items()), flush=True)
    print(json.dumps(results, indent=1))
    if not args.no_export:
        command = " ".join(["python", "benchmarks/critic_prev_token.py", *sys.argv[1:]])
        entries = [
            results_io.entry(f"{args.prefix}_critic_{name}_{metric}_step{k}", round(v, 4), metric, command)
            for name, by_step in results.items()
            for k, r in by_step.items()
            for metric, v in r.items()
            if metric in ("prev_argmax_share", "prev_minus_mean", "spread")
        ]
        device = "cuda" if args.device.startswith("cuda") else "cpu"
        print(results_io.write(args.results or f"credit_g2p_{device}", entries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
