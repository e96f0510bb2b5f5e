"""Decode a corpus in length-sorted batches and score it with the field's metrics."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from seqlab.config import DecodeConfig
from seqlab.data.vocab import EOS_ID, PAD_ID
from seqlab.decoding import beam_search, greedy_search
from seqlab.decoding.graphs import compiled_decoding, decode_precision
from seqlab.metrics import compute_metrics
from seqlab.utils import eval_mode


def pad_batch(seqs: Sequence[Sequence[int]], device: torch.device) -> torch.Tensor:
    """Right-padded id rows on ``device`` (to a GPU from pinned memory, without waiting for the copy)."""
    width = max(len(s) for s in seqs)
    out = torch.tensor([list(s) + [PAD_ID] * (width - len(s)) for s in seqs], dtype=torch.long)
    if device.type != "cuda":
        return out.to(device)
    return out.pin_memory().to(device, non_blocking=True)


def decoding_switches(decode: DecodeConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """What a run's decode section switches on around its searches: the compiled decoder step (``decode.compile``,
    on a GPU; elsewhere the searches run uncompiled either way)."""
    if decode.compile and device.type == "cuda":
        return compiled_decoding(True)
    return contextlib.nullcontext()


def encode_lines(tokenizer: Any, lines: Sequence[str], max_len: int) -> list[list[int]]:
    """Each line's token ids, cut to ``max_len - 1`` and ended by EOS: how sources (and scored targets) enter a
    model at inference."""
    return [tokenizer.encode(line)[: max_len - 1] + [EOS_ID] for line in lines]


def strip_ids(row: Sequence[int]) -> list[int]:
    """Token ids up to (excluding) the first EOS, without padding."""
    out = []
    for t in row:
        if t == EOS_ID:
            break
        if t != PAD_ID:
            out.append(int(t))
    return out


@torch.no_grad()
def decode_ids(
    model: Any,
    sources: Sequence[Sequence[int]],
    decode: DecodeConfig,
    device: torch.device,
    beam_size: int | None = None,
    batch_size: int | None = None,
    show_progress: bool = False,
    decoder: Any = None,
) -> list[list[int]]:
    """Decode source id lists (EOS included); returns hypothesis ids (no EOS) in input order.

    ``decoder(model, src) -> Hypotheses`` replaces greedy / beam search.  A model with a
    ``generate(src, decode_cfg, beam_size)`` method (NAT models) brings its own decoding."""
    beam = decode.beam_size if beam_size is None else beam_size
    bs = batch_size or decode.batch_size
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    results: list[list[int]] = [[] for _ in sources]
    kw = dict(max_len_a=decode.max_len_a, max_len_b=decode.max_len_b, max_len=decode.max_len)
    chunks = [order[i : i + bs] for i in range(0, len(order), bs)]
    with eval_mode(model), decoding_switches(decode, device):
        for chunk in tqdm(chunks, desc="decode", leave=False) if show_progress else chunks:
            src = pad_batch([sources[i] for i in chunk], device)
            if decoder is not None:
                hyp = decoder(model, src)
            elif hasattr(model, "generate"):
                hyp = model.generate(src, decode, beam)
            else:
                with decode_precision(device):  # TF32 products unless SEQLAB_DECODE_TF32=0
                    if beam <= 1:
                        hyp = greedy_search(model, src, **kw)
                    else:
                        hyp = beam_search(model, src, beam_size=beam, length_penalty=decode.length_penalty, **kw)
            for i, row in zip(chunk, hyp.token_rows(), strict=True):
                results[i] = strip_ids(row)
    return results


def evaluate_corpus(
    model: Any,
    corpus: Any,
    src_tok: Any,
    tgt_tok: Any,
    metrics: list[str],
    decode: DecodeConfig,
    device: torch.device,
    beam_size: int | None = None,
    max_examples: int | None = None,
    show_progress: bool = False,
    decoder: Any = None,
) -> tuple[dict[str, float], list[str]]:
    """Decode every distinct source of ``corpus`` and score against all its references."""
    sources, refs = corpus.references()
    if max_examples is not None:
        sources, refs = sources[:max_examples], refs[:max_examples]
    src_ids = encode_lines(src_tok, sources, decode.max_len)
    hyp_ids = decode_ids(
        model, src_ids, decode, device, beam_size=beam_size, show_progress=show_progress, decoder=decoder
    )
    hyps = [tgt_tok.decode(h) for h in hyp_ids]
    return compute_metrics(metrics, hyps, refs), hyps
