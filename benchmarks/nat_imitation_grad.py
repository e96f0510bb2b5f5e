"""How large is imitate-NAT's imitation gradient against the NLL gradient, at the initialisation from the demonstrator?

Builds the imitate-NAT run of ``configs/multi30k_imitate_nat.yaml`` (with overrides, e.g. a bench_nat work folder's
teacher, distilled corpus and smoke model), initialises the NAT from the demonstrator as training does, and on the
first ``--batches`` training batches (eval mode: no dropout, so both terms see the same network) compares
||∇ NLL|| (token NLL + 0.1 × length NLL) with ||∇ λ2 · imitation|| over the model's parameters, over the parameters
outside the imitation modules (the shared network), and their cosine.  Prints one line per batch and the mean:

    python benchmarks/nat_imitation_grad.py --work /tmp/nat_sweep --pair de-en --smoke
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import torch
from bench_nat import SMOKE_MODEL, yaml_value

REPO = Path(__file__).resolve().parents[1]


def grad_vector(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> torch.Tensor:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return torch.cat(
        [(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params, strict=True)]
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", required=True, type=Path, help="a bench_nat work folder (demonstrator, distilled corpus)")
    p.add_argument("--pair", default="de-en")
    p.add_argument("--smoke", action="store_true", help="the smoke model options (as bench_nat --smoke)")
    p.add_argument("--imitation-weight", type=float, default=0.001)
    p.add_argument("--batches", type=int, default=5)
    p.add_argument("override", nargs="*", help="further config overrides KEY=VALUE")
    args = p.parse_args()

    import seqlab.nat  # noqa: F401  (registers the models)
    from seqlab.config import load_config
    from seqlab.data.batching import collate
    from seqlab.train.trainer import Trainer

    pair = args.work / args.pair
    teacher = pair / "dat" / "checkpoint_best.pt"
    task = json.loads((pair / "distilled" / "task.json").read_text())
    with tempfile.TemporaryDirectory() as run_dir:
        shutil.copytree(pair / "distilled" / "tokenizers", Path(run_dir) / "tokenizers")
        overrides = [
            f"run_dir={run_dir}",
            "train.device=cpu",
            "task.name=parallel",
            f"task.options={yaml_value(task)}",
            f"algorithm.options.teacher={teacher}",
            f"algorithm.options.imitation_weight={args.imitation_weight}",
            "train.tensorboard=false",
            "train.progress_bar=false",
        ]
        if args.smoke:
            overrides += [f"model.options={yaml_value({**SMOKE_MODEL, 'imitation': True})}", "train.max_tokens=2048"]
        cfg = load_config(REPO / "configs" / "multi30k_imitate_nat.yaml", overrides + args.override)
        trainer = Trainer(cfg, console=False)
        model, algo = trainer.model.eval(), trainer.algorithm
        algo.maybe_initialize(model)
        named = [(n, q) for n, q in model.named_parameters() if q.requires_grad]
        params = [q for _, q in named]
        shared = torch.cat(
            [torch.full((q.numel(),), not n.startswith("imitation."), dtype=torch.bool) for n, q in named]
        )
        rows = []
        for i, indices in zip(range(args.batches), trainer.sampler, strict=False):
            batch = collate(trainer.train_data, indices).to(trainer.device)
            nll, _, body, student = algo.nat_terms(model, batch)
            imitation = algo.imitation_weight * algo.imitation_term(batch, body, student)
            g_nll, g_imi = grad_vector(nll, params), grad_vector(imitation, params)
            row = {
                "all": float(g_imi.norm() / g_nll.norm()),
                "shared": float(g_imi[shared].norm() / g_nll[shared].norm()),
                "cosine_shared": float(torch.nn.functional.cosine_similarity(g_imi[shared], g_nll[shared], 0)),
            }
            rows.append(row)
            print(
                f"batch {i}: |grad imitation| / |grad NLL| = {row['all']:.3g} (all parameters), "
                f"{row['shared']:.3g} (outside the imitation modules), cosine {row['cosine_shared']:+.3f}"
            )
        mean = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}
        print(
            f"mean over {len(rows)} batches (imitation weight {args.imitation_weight:g}): "
            f"{mean['all']:.3g} all, {mean['shared']:.3g} shared, cosine {mean['cosine_shared']:+.3f}"
        )


if __name__ == "__main__":
    main()
