"""Where the RAML family's weights go on real references: the mean weight on the reference and the per-source
effective sample size, for RAML's default (n-gram proposals, self-normalised exp(R/τ)), Hamming proposals without
and with the exact density correction, α-DiMT's preset (with p_θ left out: a uniform model), and VAML's sample
weights as the credit table ran them (softmax of the length-scaled return / 0.4) and as the authors' train_vaml.py
(softmax of sentence BLEU, temperature 1).

    python benchmarks/raml_weights.py --config configs/multi30k_transformer.yaml \
        task.options.path=../shared/data/multi30k --out raml_weights_cpu
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import torch
from reward_draw import references  # noqa: E402

from seqlab.algorithms.base import AlgorithmContext, build_algorithm
from seqlab.bench import results as results_io
from seqlab.config import load_config
from seqlab.erpo.weightings import effective_sample_size

SETTINGS = {
    "raml_default": ("raml", {}),
    "raml_hamming": ("raml", {"proposal": "hamming", "num_samples": 8}),
    "raml_hamming_exact": ("raml", {"proposal": "hamming", "proposal_correction": "exact", "num_samples": 8}),
    "alpha_dimt_default_uniform_model": ("alpha_dimt", {}),
    # VAML's sequence weights over the reference and its n-gram replacements (the credit table's settings)
    "vaml_return_tau0.4": (
        "vaml",
        {"tau": 0.4, "num_samples": 5, "scale_by_length": True, "weight_reward": "return", "weight_tau": None},
    ),
    "vaml_sentence_bleu_tau1": (
        "vaml",
        {"tau": 0.4, "num_samples": 5, "scale_by_length": True, "weight_reward": "sentence", "weight_tau": 1.0},
    ),
}


def vaml_weights(algo, refs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """VAML's self-normalised sample weights (weights, is_reference, group) on the references' proposals."""
    prop = algo.propose(refs)
    group_refs = refs.index_select(0, prop.group)
    w = algo.sample_weights(algo.token_rewards(prop.tokens, group_refs), group_refs, prop.group)
    return w, prop.is_reference, prop.group


class _Batch:
    def __init__(self, tgt: torch.Tensor):
        self.tgt, self.src = tgt, tgt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--cache", default="runs/reward_draw_tokenizers")
    p.add_argument("--out", default=None)
    p.add_argument("--prefix", default="multi30k")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    refs, vocab = references(load_config(args.config, args.overrides), args.n, Path(args.cache))
    entries = []
    for name, (algo_name, options) in SETTINGS.items():
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            algo = build_algorithm(algo_name, AlgorithmContext(vocab_size=vocab), options)
        if algo_name == "vaml":
            w, is_reference, group = vaml_weights(algo, refs)
        else:
            prop = algo.propose(None, _Batch(refs), None)
            reward = algo.reward(prop.tokens, refs.index_select(0, prop.group))
            w, is_reference, group = algo.weights(prop, reward, torch.zeros(len(prop))), prop.is_reference, prop.group
        on_ref = float(w[is_reference].mean())
        ess = float(effective_sample_size(w, group).mean())
        k = algo.num_samples
        print(f"{name:34s} K={k:2d}: weight on the reference {on_ref:.4f}  effective samples {ess:.2f} of {k}")
        entries += [
            results_io.entry(f"{args.prefix}_{name}_weight_on_reference", round(on_ref, 4), "weight"),
            results_io.entry(f"{args.prefix}_{name}_effective_samples", round(ess, 3), "samples"),
        ]
    if args.out:
        print(results_io.write(args.out, entries))


if __name__ == "__main__":
    main()
