"""Peak memory of one training step of a sampling algorithm, with the one loss in one pass and in chunks.

    python benchmarks/loss_memory.py --checkpoint .devdata/cmp/m30k/pretrain/checkpoint_best.pt \
        --data .devdata/multi30k --device cpu --max-tokens 2048

The Multi30k de->en Transformer of configs/multi30k_transformer.yaml from an MLE checkpoint (its run dir's
tokenizers), the batch of ``--max-tokens`` with the most sentences, one ``loss`` + ``backward`` of ``--algorithm``
(default pg, K = 4 samples) per setting of ``train.loss_chunk_tokens``, from the same RNG state.  Peak: the CUDA
allocator's on a GPU, the process's resident-set high-water mark on a CPU (Linux), above what was held before.
Also checks that both settings give the same gradient.  Writes benchmarks/results/loss_memory_<device>.json:
``<algo>_step_peak_memory_gib_one_pass``, ``<algo>_step_peak_memory_gib_chunked``.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import torch

from seqlab.algorithms.base import AlgorithmContext, Progress, build_algorithm
from seqlab.bench import results as results_io
from seqlab.config import load_config
from seqlab.data.batching import TokenBatchSampler, collate, encode_corpus
from seqlab.data.tasks import load_task
from seqlab.erpo.engine import DEFAULT_LOSS_CHUNK_TOKENS, loss_chunk_tokens
from seqlab.models import build_model
from seqlab.train.trainer import load_model_weights

REPO = Path(__file__).resolve().parents[1]


def rss_gib(key: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 2**20
    raise RuntimeError(f"{key} not in /proc/self/status")


def step_peak_gib(model, algorithm, batch, device: torch.device, chunk: int | None, seed: int = 0):
    """(peak GiB, gradient vector, seconds) of one loss + backward."""
    model.zero_grad(set_to_none=True)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        open("/proc/self/clear_refs", "w").write("5")  # restart the high-water mark (VmHWM)
        base = rss_gib("VmRSS")
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
    with autocast, loss_chunk_tokens(chunk):
        loss, _ = algorithm.loss(model, batch, Progress())
    loss.backward()
    if cuda:
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**30
    else:
        peak = rss_gib("VmHWM") - base
    grad = torch.cat([p.grad.flatten().float() for p in model.parameters() if p.grad is not None])
    return peak, grad, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "multi30k"))
    ap.add_argument("--algorithm", default="pg")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--max-tokens", type=int, default=8192)
    ap.add_argument("--chunk-tokens", type=int, default=DEFAULT_LOSS_CHUNK_TOKENS)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    device = torch.device(args.device)
    cfg = load_config(REPO / "configs" / "multi30k_transformer.yaml")
    ckpt = Path(args.checkpoint)
    task = load_task("multi30k", {**cfg.task.options, "path": args.data}, ckpt.parent / "tokenizers")
    data = encode_corpus(task.train, task.src_tokenizer, task.tgt_tokenizer, max_len=cfg.train.max_len)
    sampler = TokenBatchSampler(data.lengths(), max_tokens=args.max_tokens, shuffle=True, seed=1)
    sampler.set_epoch(0)
    batch = collate(data, max(sampler, key=len)).to(device)
    model = build_model(
        cfg.model.arch,
        task.src_tokenizer.vocab_size,
        task.tgt_tokenizer.vocab_size,
        **{**cfg.model.options, "dropout": 0.0},
    ).to(device)  # no dropout: identical gradients
    load_model_weights(model, ckpt)
    model.train()
    ctx = AlgorithmContext(
        vocab_size=task.tgt_tokenizer.vocab_size, label_smoothing=0.1, device=device, tgt_tokenizer=task.tgt_tokenizer
    )
    algorithm = build_algorithm(args.algorithm, ctx, {}).to(device)
    one, g_one, s_one = step_peak_gib(model, algorithm, batch, device, None)
    chunked, g_chunked, s_chunked = step_peak_gib(model, algorithm, batch, device, args.chunk_tokens)
    diff = float((g_one - g_chunked).abs().max() / g_one.abs().max())
    print(
        f"{args.algorithm} on {batch.tgt.size(0)} sentences ({args.max_tokens}-token batch), {device}: "
        f"one pass {one:.2f} GiB in {s_one:.1f} s; chunks of {args.chunk_tokens} positions {chunked:.2f} GiB "
        f"in {s_chunked:.1f} s; max relative gradient difference {diff:.1e}"
    )
    if args.no_write:
        return
    command = results_io.command_line()
    entries = [
        results_io.entry(f"{args.algorithm}_step_peak_memory_gib_one_pass", round(one, 2), "GiB", command),
        results_io.entry(f"{args.algorithm}_step_peak_memory_gib_chunked", round(chunked, 2), "GiB", command),
    ]
    print("wrote", results_io.write(f"loss_memory_{device.type}", entries))


if __name__ == "__main__":
    main()
