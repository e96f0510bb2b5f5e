"""Speed of seqlab against a plain PyTorch loop (nn.Transformer, no KV cache) and Hugging Face BART,
on Multi30k de->en with the same model size, data and batches, measured in the same run.

    python benchmarks/bench_speed.py --data ../shared/data/multi30k --config configs/multi30k_transformer.yaml

Metrics: train_tok_per_s (the fastest of the eager step, train_tok_per_s_eager, the train.cuda_graphs step on CUDA,
train_tok_per_s_cuda_graphs, and the train.compile step, train_tok_per_s_compiled), train_tok_per_s_ratio_vs_plain
(and _eager), greedy_decode_sent_per_s, greedy_decode_sent_per_s_ratio_vs_plain, beam5_decode_sent_per_s,
batch1_greedy_latency_ms, the captured
searches' agreement with the eager ones (greedy_graph_vs_eager_identical_fraction,
beam5_graph_vs_eager_identical_fraction) and their eager speeds (*_eager), and the same for BART (hf_bart_*).
On CUDA also the captured searches in bf16 (*_graph_bf16): their speed, their agreement with fp32
(*_graph_bf16_vs_fp32_identical_fraction) and with the eager searches in bf16
(*_graph_bf16_vs_eager_bf16_identical_fraction), and test BLEU in both precisions (*_test_bleu_{fp32,graph_bf16}).
Writes benchmarks/results/speed_<device>.json unless --no-write; ``--profile DIR`` also writes torch.profiler tables of
one pass of each search, captured and eager (``DIR/decode_{greedy,beam5}_{graph,eager}.txt``).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import math
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.bench import results as results_io
from seqlab.bench.timing import first_batches, profile_table, report_conditions, sync, timing_conditions, until_returned
from seqlab.bench.timing import timed as timed_call
from seqlab.config import Config, DecodeConfig, load_config
from seqlab.data.vocab import BOS_ID, EOS_ID, PAD_ID
from seqlab.decoding.graphs import decode_precision
from seqlab.decoding.search import Hypotheses, static_search
from seqlab.metrics import compute_metrics
from seqlab.models.base import shift_right
from seqlab.train.evaluate import decode_ids, encode_lines, pad_batch
from seqlab.train.trainer import Trainer


class PlainTransformer(nn.Module):
    """What a user writes with nn.Transformer: embeddings, sinusoidal positions, full recomputation."""

    def __init__(
        self, vocab: int, d_model: int, heads: int, ffn: int, enc_layers: int, dec_layers: int, dropout: float
    ):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model, padding_idx=PAD_ID)
        self.core = nn.Transformer(
            d_model, heads, enc_layers, dec_layers, ffn, dropout, batch_first=True, norm_first=True
        )
        self.out = nn.Linear(d_model, vocab)
        pos = torch.arange(1024).unsqueeze(1)
        div = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(1024, d_model)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
        self.register_buffer("pe", pe)
        self.scale = math.sqrt(d_model)

    def emb(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(x) * self.scale + self.pe[: x.size(1)]

    def encode(self, src: torch.Tensor) -> torch.Tensor:
        return self.core.encoder(self.emb(src), src_key_padding_mask=src.eq(PAD_ID))

    def decode(self, memory: torch.Tensor, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        mask = self.core.generate_square_subsequent_mask(tgt_in.size(1), device=tgt_in.device)
        h = self.core.decoder(
            self.emb(tgt_in), memory, tgt_mask=mask, tgt_is_causal=True, memory_key_padding_mask=src.eq(PAD_ID)
        )
        return self.out(h)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(src), src, tgt_in)

    @torch.no_grad()
    def greedy(self, src: torch.Tensor, max_len: int, stop_at_eos: bool = True) -> torch.Tensor:
        memory = self.encode(src)
        ys = torch.full((src.size(0), 1), BOS_ID, dtype=torch.long, device=src.device)
        done = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
        for _ in range(max_len):
            nxt = self.decode(memory, src, ys)[:, -1].argmax(-1)  # the whole prefix recomputed every step
            ys = torch.cat([ys, nxt.unsqueeze(1)], 1)
            done |= nxt.eq(EOS_ID)
            if stop_at_eos and bool(done.all()):
                break
        return ys[:, 1:]


def time_training(step_fn, batches, warmup: int) -> float:
    """Target tokens per second on a second pass over the batches.

    The first pass is untimed: every batch shape is slow the first time on a GPU (allocator and kernel
    selection), so timing a first pass favours whichever system runs later in the process.  The tokens are
    counted before the timed pass: reading a count from the GPU inside it would wait for every step, so the host
    could not queue the next step while the GPU runs this one (``seqlab train`` waits once per logging window)."""
    device = batches[0].tgt.device
    for b in batches:
        step_fn(b)
    tokens = sum(int(b.tgt.ne(PAD_ID).sum()) for b in batches[warmup:])
    sync(device)
    start = time.perf_counter()
    for b in batches[warmup:]:
        step_fn(b)
    sync(device)
    return tokens / (time.perf_counter() - start)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/multi30k_transformer.yaml")
    ap.add_argument("--data", default="../shared/data/multi30k")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--decode-batch", type=int, default=256)
    ap.add_argument("--latency-sentences", type=int, default=200)
    ap.add_argument("--test-sentences", type=int, default=None)
    ap.add_argument("--checkpoint", help="trained seqlab checkpoint: decoding is timed on realistic outputs")
    ap.add_argument("--tokenizers", help="the tokenizers folder of that checkpoint's run (reused, not retrained)")
    ap.add_argument("--no-bart", action="store_true")
    ap.add_argument("--no-compile", action="store_true", help="no train.compile step (graphs still timed)")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument(
        "--label",
        default="",
        help="appended to every metric name, e.g. _compiled_decode for a run with "
        "SEQLAB_COMPILE_DECODE=1 beside the defaults' entries",
    )
    ap.add_argument("--profile", type=Path, help="also write torch.profiler tables of one pass of each search here")
    ap.add_argument("overrides", nargs="*")
    return ap.parse_args()


def build_trainer(args: argparse.Namespace) -> Trainer:
    """A seqlab trainer on the benchmark's data in a fresh temporary run directory (``--tokenizers`` reused)."""
    run_dir = tempfile.mkdtemp(prefix="seqlab_speed_")
    if args.tokenizers:
        shutil.copytree(args.tokenizers, Path(run_dir) / "tokenizers")
    cfg = load_config(
        args.config,
        [
            f"run_dir={run_dir}",
            f"task.options.path={args.data}",
            "train.resume=false",
            "train.progress_bar=false",
            "train.cuda_graphs=false",  # the eager step first; time_graphed_training captures
            *args.overrides,
        ],
    )
    return Trainer(cfg, console=False)


#: train.cuda_graphs_width values timed beside the default (padding against buckets: benchmarks/shape_keys.py)
GRAPH_WIDTHS = (2, 4, 8)


def time_graphed_training(trainer: Trainer, batches: list, args: argparse.Namespace) -> dict[str, float]:
    """The trainer's step with train.cuda_graphs at each of :data:`GRAPH_WIDTHS` (the first pass captures each
    bucket, the timed pass replays): ``train_tok_per_s_cuda_graphs_w<width>``, and the default width's as
    ``train_tok_per_s_cuda_graphs``."""
    results, default, switch = {}, trainer.cfg.train.cuda_graphs_width, trainer.cfg.train.cuda_graphs
    trainer.cfg.train.cuda_graphs = True
    for width in GRAPH_WIDTHS:
        trainer.cfg.train.cuda_graphs_width = width
        trainer.graphed = trainer._graphed_step()
        try:  # new: a failure must not lose the other figures
            rate = time_training(trainer.train_step, batches, args.warmup)
            print(f"train.cuda_graphs_width={width}: {trainer.graphed.captures} buckets captured", flush=True)
            if trainer.device.type == "cuda" and not trainer.graphed.captures:  # it warned and stepped eagerly
                print(f"train.cuda_graphs_width={width}: nothing was captured; not recorded", flush=True)
            else:
                results[f"train_tok_per_s_cuda_graphs_w{width}"] = rate
        except Exception as e:  # noqa: BLE001
            print(f"train.cuda_graphs_width={width} failed: {type(e).__name__}: {e}", flush=True)
        trainer.graphed = None
        trainer.optimizer.zero_grad(set_to_none=True)
    trainer.cfg.train.cuda_graphs, trainer.cfg.train.cuda_graphs_width = switch, default
    if f"train_tok_per_s_cuda_graphs_w{default}" in results:
        results["train_tok_per_s_cuda_graphs"] = results[f"train_tok_per_s_cuda_graphs_w{default}"]
    return results


def time_seqlab_training(trainer: Trainer, batches: list, args: argparse.Namespace) -> dict[str, float]:
    """The trainer's step eagerly, with train.cuda_graphs on CUDA (:func:`time_graphed_training`) and with
    train.compile (unless --no-compile), and the fastest of them."""
    results = {"train_tok_per_s_eager": time_training(trainer.train_step, batches, args.warmup)}
    if trainer.device.type == "cuda":
        results.update(time_graphed_training(trainer, batches, args))
    if not args.no_compile:
        from seqlab.train.compiled import compile_layers

        compile_layers(trainer.model)
        trainer.cfg.train.compile = True  # train_step buckets the batch widths
        t0 = time.perf_counter()
        results["train_tok_per_s_compiled"] = time_training(trainer.train_step, batches, args.warmup)
        print(f"compiled training: {time.perf_counter() - t0:.1f} s for both passes (compile included)")
    results["train_tok_per_s"] = max(v for k, v in results.items() if k.startswith("train_tok_per_s_"))
    return results


def time_plain_training(
    plain: PlainTransformer, batches: list, warmup: int, seqlab_results: dict[str, float]
) -> dict[str, float]:
    """The plain loop (AdamW, label smoothing 0.1, clipping) on the same batches, and seqlab's ratios to it."""
    opt = torch.optim.AdamW(plain.parameters(), lr=1e-4)

    def plain_step(b):
        logits = plain(b.src, shift_right(b.tgt))
        loss = F.cross_entropy(
            logits.view(-1, logits.size(-1)), b.tgt.view(-1), ignore_index=PAD_ID, label_smoothing=0.1
        )
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(plain.parameters(), 1.0)
        opt.step()

    tok_per_s = time_training(plain_step, batches, warmup)
    return {
        "plain_train_tok_per_s": tok_per_s,
        "train_tok_per_s_ratio_vs_plain": seqlab_results["train_tok_per_s"] / tok_per_s,
        "train_tok_per_s_ratio_vs_plain_eager": seqlab_results["train_tok_per_s_eager"] / tok_per_s,
    }


def timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    """Seconds ``fn()`` takes, the device synchronized before and after (:func:`seqlab.bench.timing.timed`)."""
    return lambda fn: timed_call(fn, device)[1]


def encoded_test_sources(trainer: Trainer, args: argparse.Namespace) -> list[list[int]]:
    """The test sources (the first --test-sentences), as token ids ending in EOS, as inference reads them
    (:func:`~seqlab.train.evaluate.encode_lines`)."""
    sources, _ = trainer.task.test.references()
    sources = sources[: args.test_sentences] if args.test_sentences else sources
    return encode_lines(trainer.task.src_tokenizer, sources, trainer.cfg.decode.max_len)


def identical_fraction(a: list[list[int]], b: list[list[int]]) -> float:
    """The share of hypotheses two decodings of the same sources agree on exactly."""
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


def time_seqlab_decoding(
    model: nn.Module,
    src_ids: list[list[int]],
    cfg: Config,
    device: torch.device,
    args: argparse.Namespace,
    compare_eager: bool | None = None,
) -> tuple[dict[str, float], list[int], dict[int, list[list[int]]]]:
    """Greedy and beam-5 decoding of the test sources (captured searches, compared with the eager ones where
    ``compare_eager``, by default on CUDA); also the number of steps each greedy hypothesis took (the baselines decode
    as many) and the hypotheses by beam size."""
    compare_eager = device.type == "cuda" if compare_eager is None else compare_eager
    results: dict[str, float] = {}
    timed = timer(device)

    def decode(beam_size: int) -> list[list[int]]:
        return decode_ids(model, src_ids, cfg.decode, device, beam_size=beam_size, batch_size=args.decode_batch)

    def uncaptured(beam_size: int) -> list[list[int]]:
        """The captured search's own fixed-shape search, run without the capture (the same shapes and kernels)."""
        d = cfg.decode

        def search(net: nn.Module, src: torch.Tensor) -> Hypotheses:
            with decode_precision(device):
                return static_search(
                    net, src, beam_size, d.length_penalty, d.max_len_a, d.max_len_b, d.max_len, graph=False
                )

        return decode_ids(model, src_ids, d, device, beam_size=beam_size, batch_size=args.decode_batch, decoder=search)

    def compare(captured: list[list[int]], other: list[list[int]], name: str, label: str) -> None:
        """The share of identical hypotheses as ``{name}_graph_vs_{label}_identical_fraction``; the first sources that
        differ printed."""
        same = identical_fraction(other, captured)
        results[f"{name}_graph_vs_{label}_identical_fraction"] = same
        print(f"{name}, CUDA graphs vs {label}: {same:.4f} of hypotheses identical")
        for i in [i for i, (a, b) in enumerate(zip(other, captured, strict=True)) if a != b][:10]:
            print(f"  test source {i}: {label} {other[i]}, captured {captured[i]}")

    def against_eager(beam_size: int, captured: list[list[int]], name: str) -> None:
        """The captured search must give the eager search's hypotheses (``beam_search``'s own loop, on the batch's
        own shapes) and those of its fixed-shape search run uncaptured; also time the eager search."""
        with mock.patch.dict(os.environ, {"SEQLAB_CUDA_GRAPHS": "0"}):
            eager = decode(beam_size)
            t_eager = timed(lambda: decode(beam_size))
        results[f"{name}_decode_sent_per_s_eager"] = len(src_ids) / t_eager
        compare(captured, eager, name, "eager")
        compare(captured, uncaptured(beam_size), name, "uncaptured")

    for beam in (1, 5):  # warm-up pass over every batch shape
        decode(beam)
    hyps: list[list[int]] = []
    results["greedy_decode_sent_per_s"] = len(src_ids) / timed(lambda: hyps.extend(decode(1)))
    if compare_eager:
        against_eager(1, hyps, "greedy")
    beams: list[list[int]] = []
    with mock.patch.dict(os.environ, {"SEQLAB_STATIC_BEAM": "1"}):  # the captured beam search (the default since s24)
        decode(5)  # warm-up
        results["beam5_decode_sent_per_s"] = len(src_ids) / timed(lambda: beams.extend(decode(5)))
        if compare_eager:
            against_eager(5, beams, "beam5")
    return results, [len(h) + 1 for h in hyps], {1: hyps, 5: beams}


def test_bleu_of(trainer: Trainer, args: argparse.Namespace) -> Callable[[list[list[int]]], float]:
    """Corpus BLEU (sacrebleu, as ``seqlab evaluate``) of decoded test hypotheses, given as token ids in the order
    of :func:`encoded_test_sources`."""
    _, refs = trainer.task.test.references()
    refs = refs[: args.test_sentences] if args.test_sentences else refs
    tok = trainer.task.tgt_tokenizer
    return lambda hyps: compute_metrics(["bleu"], [tok.decode(h) for h in hyps], refs)["bleu"]


def time_bf16_searches(
    model: nn.Module,
    src_ids: list[list[int]],
    cfg: Config,
    device: torch.device,
    args: argparse.Namespace,
    fp32: dict[int, list[list[int]]],
    bleu: Callable[[list[list[int]]], float],
) -> dict[str, float]:
    """The captured searches under bf16 autocast (SEQLAB_GRAPH_BF16=1; fp32 is the default): greedy and beam-5
    throughput, batch-1 greedy latency, the share of hypotheses equal to the fp32 captured searches' (``fp32``, by
    beam size) and to the eager searches' under the same bf16 autocast, and test BLEU in both precisions (what
    making bf16 the default would change)."""
    timed = timer(device)

    def decode(beam_size: int) -> list[list[int]]:
        return decode_ids(model, src_ids, cfg.decode, device, beam_size=beam_size, batch_size=args.decode_batch)

    results = {}
    with mock.patch.dict(os.environ, {"SEQLAB_STATIC_BEAM": "1", "SEQLAB_GRAPH_BF16": "1"}):
        for beam, name in ((1, "greedy"), (5, "beam5")):
            decode(beam)  # warm-up: captures in bf16
            hyps: list[list[int]] = []
            seconds = timed(functools.partial(lambda b, sink: sink.extend(decode(b)), beam, hyps))
            results[f"{name}_decode_sent_per_s_graph_bf16"] = len(src_ids) / seconds
            results[f"{name}_graph_bf16_vs_fp32_identical_fraction"] = identical_fraction(fp32[beam], hyps)
            with mock.patch.dict(os.environ, {"SEQLAB_CUDA_GRAPHS": "0"}):
                with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                    eager = decode(beam)
            results[f"{name}_graph_bf16_vs_eager_bf16_identical_fraction"] = identical_fraction(eager, hyps)
            results[f"{name}_test_bleu_fp32"] = bleu(fp32[beam])
            results[f"{name}_test_bleu_graph_bf16"] = bleu(hyps)
        results["batch1_greedy_latency_ms_graph_bf16"] = batch1_latency_ms(
            model, src_ids, cfg.decode, device, args.latency_sentences
        )
    return results


def profile_decoding(
    model: nn.Module, src_ids: list[list[int]], cfg: Config, device: torch.device, args: argparse.Namespace
) -> list[Path]:
    """torch.profiler tables (:func:`~seqlab.bench.timing.profile_table`) of one pass of greedy and beam-5 decoding
    over the test sources, captured (CUDA graphs; the beam search's static one) and eager, after a warm-up pass
    of each: ``<--profile>/decode_{greedy,beam5}_{graph,eager}.txt`` (eager only off CUDA)."""
    written = []
    modes = ("graph", "eager") if device.type == "cuda" else ("eager",)
    for (beam, name), mode in itertools.product(((1, "greedy"), (5, "beam5")), modes):
        env = {"SEQLAB_CUDA_GRAPHS": "1" if mode == "graph" else "0", "SEQLAB_STATIC_BEAM": "1"}
        with mock.patch.dict(os.environ, env):  # restored as it was afterwards
            work = functools.partial(
                decode_ids, model, src_ids, cfg.decode, device, beam_size=beam, batch_size=args.decode_batch
            )
            work()  # warm-up: captures every batch shape
            path = args.profile / f"decode_{name}_{mode}.txt"
            profile_table(work, device, path)
            written.append(path)
    return written


def time_plain_decoding(
    plain: PlainTransformer, src_ids: list[list[int]], steps_of: list[int], device: torch.device, batch_size: int
) -> float:
    """Sentences per second of the plain model's greedy search, as many steps per batch as seqlab's outputs."""
    plain.eval()
    order = sorted(range(len(src_ids)), key=lambda i: len(src_ids[i]))

    def plain_decode():
        with decode_precision(device):  # the matrix-product precision of seqlab's searches (TF32 by default)
            for i in range(0, len(order), batch_size):
                chunk = order[i : i + batch_size]
                src = pad_batch([src_ids[j] for j in chunk], device)
                plain.greedy(src, max_len=max(steps_of[j] for j in chunk), stop_at_eos=False)

    plain_decode()  # warm-up
    return len(src_ids) / timer(device)(plain_decode)


def batch1_latency_ms(
    model: nn.Module,
    src_ids: list[list[int]],
    decode: DecodeConfig,
    device: torch.device,
    n: int,
    warmup: int | None = 20,
) -> float:
    """Median milliseconds of a greedy search of one sentence (the first ``n``), after ``warmup`` warm-up sentences
    (None: the ``n`` timed ones, so that every shape bucket is captured before the timing): from the call, the device
    idle, until the hypothesis is on the host (:func:`~seqlab.bench.timing.until_returned`)."""
    for ids in src_ids[: n if warmup is None else warmup]:  # warm-up
        decode_ids(model, [ids], decode, device, beam_size=1)
    lat = [
        until_returned(lambda ids=ids: decode_ids(model, [ids], decode, device, beam_size=1), device)[1] * 1000
        for ids in src_ids[:n]
    ]
    return statistics.median(lat)


def write_results(results: dict[str, float], device: torch.device, label: str = "") -> None:
    """benchmarks/results/speed_<device>.json, each metric (its name followed by ``label``) with its unit."""
    units = {
        "ratio": "x",
        "fraction": "",
        "tok_per_s": "target tokens/s",
        "sent_per_s": "sentences/s",
        "latency_ms": "ms",
    }
    entries = []
    for k, v in results.items():
        unit = next((u for key, u in units.items() if key in k), "")
        entries.append(results_io.entry(k + label, round(v, 3), unit))
    print("wrote", results_io.write(f"speed_{device.type}", entries))


def main() -> None:
    args = parse_args()
    trainer = build_trainer(args)
    cfg, device = trainer.cfg, trainer.device
    print(f"device {results_io.device_name()}; model {cfg.model.options}")
    batches = first_batches(trainer, args.steps + args.warmup)
    conditions = [timing_conditions(device)]

    # --- training throughput: seqlab trainer step (eager, then train.compile) vs the plain loop, identical batches
    results = time_seqlab_training(trainer, batches, args)
    mo, vocab = cfg.model.options, trainer.task.tgt_tokenizer.vocab_size
    plain = PlainTransformer(
        vocab,
        mo["d_model"],
        mo["n_heads"],
        mo["ffn_dim"],
        mo["encoder_layers"],
        mo["decoder_layers"],
        mo.get("dropout", 0.1),
    ).to(device)
    results.update(time_plain_training(plain, batches, args.warmup, results))

    # --- decoding on the test set
    src_ids = encoded_test_sources(trainer, args)
    if args.checkpoint:
        trainer.model.load_state_dict(torch.load(args.checkpoint, map_location=device, weights_only=False)["model"])
    model = trainer.model.eval()
    decoding, steps_of, captured = time_seqlab_decoding(model, src_ids, cfg, device, args)
    results.update(decoding)
    results["plain_greedy_decode_sent_per_s"] = time_plain_decoding(plain, src_ids, steps_of, device, args.decode_batch)
    results["greedy_decode_sent_per_s_ratio_vs_plain"] = (
        results["greedy_decode_sent_per_s"] / results["plain_greedy_decode_sent_per_s"]
    )
    results["batch1_greedy_latency_ms"] = batch1_latency_ms(model, src_ids, cfg.decode, device, args.latency_sentences)
    if device.type == "cuda":
        try:  # opt-in precision, measured beside the default: a failure here must not lose the figures above
            results.update(time_bf16_searches(model, src_ids, cfg, device, args, captured, test_bleu_of(trainer, args)))
        except Exception as e:  # noqa: BLE001
            print(f"bf16 captured searches failed: {type(e).__name__}: {e}", flush=True)
    if not args.no_bart:
        results.update(bench_bart(batches, args, vocab, mo, src_ids, steps_of, device))
    conditions.append(timing_conditions(device))
    results["timing_contended"] = float(report_conditions(conditions, "bench_speed"))  # 1: not a speed figure
    if args.profile:  # last: a CUDA profiling session can leave every later kernel launch slower in this process
        print("decoding profiles:", *profile_decoding(model, src_ids, cfg, device, args), flush=True)
    for k, v in results.items():
        print(f"{k:45s} {v:12.2f}")
    if not args.no_write:
        write_results(results, device, args.label)


def bench_bart(batches, args, vocab, mo, src_ids, steps_of, device) -> dict[str, float]:
    """The same size BART from transformers, trained on the same batches (bf16 autocast on CUDA)."""
    try:
        from transformers import BartConfig, BartForConditionalGeneration
    except ImportError:
        print("transformers not installed: BART comparison skipped")
        return {}
    bcfg = BartConfig(
        vocab_size=vocab,
        d_model=mo["d_model"],
        encoder_layers=mo["encoder_layers"],
        decoder_layers=mo["decoder_layers"],
        encoder_attention_heads=mo["n_heads"],
        decoder_attention_heads=mo["n_heads"],
        encoder_ffn_dim=mo["ffn_dim"],
        decoder_ffn_dim=mo["ffn_dim"],
        dropout=mo.get("dropout", 0.1),
        max_position_embeddings=512,
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        decoder_start_token_id=BOS_ID,
        forced_eos_token_id=EOS_ID,
    )
    bart = BartForConditionalGeneration(bcfg).to(device)
    opt = torch.optim.AdamW(bart.parameters(), lr=1e-4)
    amp = device.type == "cuda"

    def step(b):
        labels = b.tgt.masked_fill(b.tgt.eq(PAD_ID), -100)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            out = bart(
                input_ids=b.src, attention_mask=b.src.ne(PAD_ID), decoder_input_ids=shift_right(b.tgt), labels=labels
            )
        opt.zero_grad()
        out.loss.backward()
        opt.step()

    res = {"hf_bart_train_tok_per_s": time_training(step, batches, args.warmup)}
    bart.eval()
    order = sorted(range(len(src_ids)), key=lambda i: len(src_ids[i]))

    def gen(chunk):
        src = pad_batch([src_ids[j] for j in chunk], device)
        steps = max(steps_of[j] for j in chunk)  # as many steps as seqlab's outputs of this batch
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp), decode_precision(device):
            bart.generate(
                input_ids=src,
                attention_mask=src.ne(PAD_ID),
                num_beams=1,
                do_sample=False,
                max_new_tokens=steps,
                min_new_tokens=steps,
            )

    for i in range(0, len(order), args.decode_batch):  # warm-up
        gen(order[i : i + args.decode_batch])
    sync(device)
    t0 = time.perf_counter()
    for i in range(0, len(order), args.decode_batch):
        gen(order[i : i + args.decode_batch])
    sync(device)
    res["hf_bart_greedy_decode_sent_per_s"] = len(src_ids) / (time.perf_counter() - t0)
    lat = []
    for j in range(20):
        gen([j])
    for j in range(min(args.latency_sentences, len(src_ids))):
        sync(device)
        t0 = time.perf_counter()
        gen([j])
        sync(device)
        lat.append((time.perf_counter() - t0) * 1000)
    res["hf_bart_batch1_greedy_latency_ms"] = statistics.median(lat)
    return res


if __name__ == "__main__":
    main()
