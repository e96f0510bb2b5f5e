"""Sequence-level knowledge distillation (Kim & Rush 2016): decode the training set with a teacher once.

Layout of the output directory::

    train.src  train.tgt      training sources (copied) and the teacher's beam outputs, line-aligned
    valid.src  valid.tgt      the original validation and test sets (references, not distilled), so the
    test.src   test.tgt       directory alone is a complete corpus for the generic ``parallel`` task
    tokenizers/{src,tgt}      the teacher's tokenizers (copy them into a run directory to train on them)
    task.json                 ``parallel`` task options pointing at these files
    distill.json              the report: teacher, beam, the teacher's test scores, the distilled
                              corpus's BLEU against the original references, counts
    .chunks/                  decoded chunks while the run is in progress (removed at the end)

Decoding goes in chunks of ``chunk_size`` examples, each written atomically; an interrupted run resumes
at the first missing chunk (a manifest refuses to mix chunks of another teacher, beam or corpus).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from seqlab.train.checkpoint import atomic_write_text

MANIFEST = "manifest.json"


def _write_atomic(path: Path, text: str) -> None:
    atomic_write_text(path, text)


def _lines_text(lines: Sequence[str]) -> str:
    return "".join(line.replace("\n", " ") + "\n" for line in lines)


def _read_chunk(path: Path, expected: int) -> list[str] | None:
    if not path.is_file():
        return None
    lines = path.read_text(encoding="utf-8").split("\n")[:-1]
    return lines if len(lines) == expected else None


def _fingerprint(lines: Sequence[str]) -> str:
    h = hashlib.sha1()
    for line in lines:
        h.update(line.encode("utf-8") + b"\n")
    return h.hexdigest()


def distill_lines(
    translate: Callable[[list[str]], list[str]],
    sources: Sequence[str],
    work_dir: str | Path,
    chunk_size: int = 2000,
    identity: dict[str, Any] | None = None,
    show_progress: bool = True,
    max_chunks: int | None = None,
) -> list[str] | None:
    """Translate ``sources`` chunk by chunk with ``translate`` (a list of lines -> as many lines), keeping
    every finished chunk in ``work_dir``; returns all outputs in input order, or None when stopped after
    ``max_chunks`` new chunks (call again to resume).  ``identity`` (teacher, beam, ...) goes into the
    manifest: a ``work_dir`` holding chunks of a different identity raises ValueError."""
    work = Path(work_dir)
    manifest = {
        "num_lines": len(sources),
        "chunk_size": chunk_size,
        "sources_sha1": _fingerprint(sources),
        **(identity or {}),
    }
    mpath = work / MANIFEST
    if mpath.is_file():
        saved = json.loads(mpath.read_text(encoding="utf-8"))
        if saved != manifest:
            diff = sorted(k for k in set(saved) | set(manifest) if saved.get(k) != manifest.get(k))
            raise ValueError(
                f"{work} holds chunks of another distillation (differs in {diff}); "
                "delete it or choose another output directory"
            )
    else:
        _write_atomic(mpath, json.dumps(manifest, indent=2))
    starts = list(range(0, len(sources), chunk_size))
    outputs: list[list[str] | None] = []
    for i, start in enumerate(starts):
        outputs.append(_read_chunk(work / f"chunk{i:06d}.txt", len(sources[start : start + chunk_size])))
    done = sum(o is not None for o in outputs)
    new = 0
    with tqdm(
        total=len(starts), initial=done, desc="distill", unit="chunk", disable=not show_progress, dynamic_ncols=True
    ) as bar:
        for i, start in enumerate(starts):
            if outputs[i] is not None:
                continue
            if max_chunks is not None and new >= max_chunks:
                return None
            chunk = list(sources[start : start + chunk_size])
            hyps = translate(chunk)
            if len(hyps) != len(chunk):
                raise RuntimeError(f"translate returned {len(hyps)} lines for {len(chunk)} sources")
            hyps = [h.replace("\n", " ") for h in hyps]
            _write_atomic(work / f"chunk{i:06d}.txt", _lines_text(hyps))
            outputs[i] = hyps
            new += 1
            bar.update(1)
    return [line for chunk in outputs for line in chunk]  # type: ignore[union-attr]


def teacher_translator(
    model: Any,
    src_tok: Any,
    tgt_tok: Any,
    decode_cfg: Any,
    device: torch.device,
    beam_size: int | None = None,
    batch_size: int | None = None,
) -> Callable[[list[str]], list[str]]:
    """Lines -> the teacher's (beam) translations, batched by length."""
    from seqlab.train.evaluate import decode_ids, encode_lines

    def translate(lines: list[str]) -> list[str]:
        ids = encode_lines(src_tok, lines, decode_cfg.max_len)
        out = decode_ids(model, ids, decode_cfg, device, beam_size=beam_size, batch_size=batch_size)
        return [tgt_tok.decode(h) for h in out]

    return translate


def corpus_bleu(hyps: Sequence[str], refs: Sequence[str]) -> dict[str, float]:
    """BLEU (sacrebleu, through :func:`seqlab.metrics.compute_metrics`) of line-aligned single references."""
    from seqlab.metrics import compute_metrics

    return compute_metrics(["bleu"], list(hyps), [[r] for r in refs])


def distill(
    teacher: str | Path,
    output: str | Path,
    config: str | Path | None = None,
    overrides: Sequence[str] = (),
    beam_size: int | None = None,
    batch_size: int | None = None,
    chunk_size: int = 2000,
    device: str = "auto",
    max_examples: int | None = None,
    evaluate_teacher: bool = True,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Distill the training set of the task (the teacher's own, or ``config`` + ``overrides``) into
    ``output``; returns (and writes) the report.  A finished output directory is not decoded again."""
    from seqlab.config import apply_overrides, config_from_dict, load_config
    from seqlab.data.tasks import load_task
    from seqlab.inference import load_checkpoint_model
    from seqlab.train.evaluate import evaluate_corpus

    out = Path(output)
    report_path = out / "distill.json"
    loaded = load_checkpoint_model(teacher, device)
    cfg = (
        load_config(config, list(overrides))
        if config is not None
        else config_from_dict(apply_overrides(loaded.config.to_dict(), list(overrides)))
    )
    beam = beam_size if beam_size is not None else cfg.decode.beam_size
    identity = {
        "teacher": str(Path(teacher).resolve()),
        "beam_size": beam,
        "task": cfg.task.name,
        "max_len": cfg.decode.max_len,
        "length_penalty": cfg.decode.length_penalty,
        "max_examples": max_examples,
    }
    if report_path.is_file():
        report = json.loads(report_path.read_text(encoding="utf-8"))
        if all(report.get(k) == v for k, v in identity.items()):
            return report
    tok_dir = out / "tokenizers"  # the teacher's tokenizers: the task reads its corpora with them
    loaded.src_tokenizer.save(tok_dir / "src")
    loaded.tgt_tokenizer.save(tok_dir / "tgt")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*cached tokenizers built with different settings.*")
        task = load_task(cfg.task.name, cfg.task.options, tok_dir)
    train = task.train
    if max_examples is not None:
        train = train.subset(range(min(max_examples, len(train))))
    translate = teacher_translator(
        loaded.model,
        loaded.src_tokenizer,
        loaded.tgt_tokenizer,
        cfg.decode,
        loaded.device,
        beam_size=beam,
        batch_size=batch_size,
    )
    hyps = distill_lines(
        translate, train.sources, out / ".chunks", chunk_size=chunk_size, identity=identity, show_progress=show_progress
    )
    assert hyps is not None
    _write_atomic(out / "train.src", _lines_text(train.sources))
    _write_atomic(out / "train.tgt", _lines_text(hyps))
    for name in ("valid", "test"):
        corpus = getattr(task, name, None)
        if corpus is not None and len(corpus):
            _write_atomic(out / f"{name}.src", _lines_text(corpus.sources))
            _write_atomic(out / f"{name}.tgt", _lines_text(corpus.targets))
    report: dict[str, Any] = {
        **identity,
        "num_examples": len(hyps),
        "num_empty_outputs": sum(not h.strip() for h in hyps),
        "distilled_vs_references": corpus_bleu(hyps, train.targets),
    }
    if evaluate_teacher:
        for name in ("valid", "test"):
            corpus = getattr(task, name, None)
            if corpus is not None and len(corpus):
                scores, _ = evaluate_corpus(
                    loaded.model,
                    corpus,
                    loaded.src_tokenizer,
                    loaded.tgt_tokenizer,
                    task.metrics,
                    cfg.decode,
                    loaded.device,
                    beam_size=beam,
                    show_progress=show_progress,
                )
                report[f"teacher_{name}"] = scores
    task_options = parallel_task_options(out, cfg.task.options, task.metrics)
    _write_atomic(out / "task.json", json.dumps(task_options, indent=2) + "\n")
    report["task_options"] = task_options
    _write_atomic(report_path, json.dumps(report, indent=2) + "\n")
    shutil.rmtree(out / ".chunks", ignore_errors=True)
    return report


def parallel_task_options(out: Path, original: dict[str, Any], metrics: Sequence[str]) -> dict[str, Any]:
    """Options of the generic ``parallel`` task reading the distilled corpus in ``out`` (tokenizer settings
    carried over from the original task; train with ``out/tokenizers`` copied into the run directory)."""
    out = out.resolve()
    options: dict[str, Any] = {
        split: {"src": str(out / f"{split}.src"), "tgt": str(out / f"{split}.tgt")}
        for split in ("train", "valid", "test")
    }
    for key in ("vocab_size", "shared_vocab", "model_type"):
        if key in original:
            options[key] = original[key]
    options["metrics"] = list(metrics)
    return options
