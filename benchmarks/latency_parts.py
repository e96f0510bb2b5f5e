"""Where a batch-1 greedy search's time goes: the host, the prologue (encoder and memory), the decoder steps, and the
gaps between them (CUDA; on the CPU only the parts' wall times are real).

The captured greedy search (:mod:`seqlab.decoding.static`) replays a prologue graph, then graphs of a few steps each,
reading the end test between them; before and after it, :func:`~seqlab.train.evaluate.decode_ids` moves the source
to the GPU and the hypothesis back. This times batch-1 greedy on the test sources without a profiler (the median
latency, as ``bench_speed.py`` does), then records the same sentences under ``torch.profiler`` and splits each
sentence's trace by the search's labels (``seqlab.search.prologue`` / ``.chunk`` / ``.end_test``): the kernels each
part ran, the time the GPU was busy with them, and the wall time the GPU was idle. Per variant (``--variants``, names
joined with ``+``):

- ``default``: the library's defaults;
- ``compiled``: the decoder step and encoder through torch.compile (``SEQLAB_COMPILE_DECODE=1``); ``autotune``: the
  same in torch.compile's ``max-autotune-no-cudagraphs`` mode (``SEQLAB_COMPILE_DECODE_MODE``);
- ``fp32``: full float32 products (``SEQLAB_DECODE_TF32=0``);
- ``lookahead`` / ``no_lookahead``: each chunk replayed before the end test of the one before it is read, or not
  (``SEQLAB_SEARCH_LOOKAHEAD=1`` / ``0``; a greedy search has it by default since session 27);
- ``chunk1``: chunks of one step (``SEQLAB_SEARCH_CHUNK_STEPS=1``);
- ``reduce``: a step's single-query attention as sums of products (``SEQLAB_SINGLE_QUERY_ATTENTION=reduce``);
- ``linear``: a step's linear layers as sums of products (``SEQLAB_FEW_ROWS_LINEAR=reduce``).

Each variant also decodes every test source (batches of ``--batch``) and compares its hypotheses with the first
variant's.

    python benchmarks/latency_parts.py RUN/checkpoint_last.pt --data .devdata/multi30k --variants default,compiled

Entries (``benchmarks/results/latency_parts_<device>.json``), per variant: ``batch1_greedy_latency_ms_<v>``,
``batch1_gpu_busy_share_<v>`` (median of the profiled sentences' GPU-busy time over their wall time),
``batch1_kernels_per_step_<v>`` and ``batch1_step_gpu_us_<v>`` (the chunk graphs' kernels and busy time per
decoder step), ``batch1_prologue_kernels_<v>`` and ``batch1_prologue_gpu_us_<v>``, ``batch1_eager_kernels_<v>``
(kernels outside the graphs, per sentence), ``batch1_before_search_us_<v>`` and ``batch1_after_search_us_<v>``
(unprofiled, median: from the call to the prologue's launch, and from the host's last end-test read to the hypothesis
on the host), ``batch1_idle_between_kernels_us_<v>`` (the GPU's idle time between a
sentence's first and last kernel, median; profiled), ``batch1_steps_<v>`` (decoder steps per sentence, median) and
``greedy_identical_fraction_<v>`` (hypotheses equal to the first variant's). The report (``--report``, JSON) adds
the kernels that take most of a step's GPU time and one chunk's kernels in the order they ran; ``--traces DIR`` keeps
each variant's profiler trace (``VARIANT.json.gz``).
"""

from __future__ import annotations

import collections
import contextlib
import gzip
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from bench_speed import batch1_latency_ms, identical_fraction  # beside this script
from chunk_steps import decoding_parser, parse_and_load

from seqlab.bench import results as results_io
from seqlab.bench.timing import sync
from seqlab.decoding import graphs
from seqlab.decoding.static import chunk_steps, clear_searches
from seqlab.models import transformer
from seqlab.train.evaluate import decode_ids
from seqlab.train.profiling import device_events, release_cupti_after_profiling, trace_device_busy_us

VARIANT_ENV = {
    "default": {},
    "compiled": {"SEQLAB_COMPILE_DECODE": "1"},
    "fp32": {"SEQLAB_DECODE_TF32": "0"},
    "autotune": {"SEQLAB_COMPILE_DECODE": "1", "SEQLAB_COMPILE_DECODE_MODE": "max-autotune-no-cudagraphs"},
    "lookahead": {"SEQLAB_SEARCH_LOOKAHEAD": "1"},
    "no_lookahead": {"SEQLAB_SEARCH_LOOKAHEAD": "0"},
    "chunk1": {"SEQLAB_SEARCH_CHUNK_STEPS": "1"},
    "reduce": {"SEQLAB_SINGLE_QUERY_ATTENTION": "reduce"},
    "linear": {"SEQLAB_FEW_ROWS_LINEAR": "reduce"},
}
PARTS = ("prologue", "chunk", "eager")


@contextlib.contextmanager
def variant_env(variant: str) -> Any:
    """The switches of ``variant`` (names from :data:`VARIANT_ENV` joined with ``+``) set inside, restored after."""
    wanted: dict[str, str] = {}
    for name in variant.split("+"):
        if name not in VARIANT_ENV:
            raise SystemExit(f"unknown variant {name!r}: one of {', '.join(VARIANT_ENV)}, joined with '+'")
        wanted.update(VARIANT_ENV[name])
    before = {k: os.environ.get(k) for k in wanted}
    os.environ.update(wanted)
    modes = transformer.SINGLE_QUERY_MODE, transformer.FEW_ROWS_LINEAR  # read once at import: set here
    transformer.SINGLE_QUERY_MODE = transformer.single_query_mode(os.environ.get("SEQLAB_SINGLE_QUERY_ATTENTION"))
    transformer.FEW_ROWS_LINEAR = transformer.few_rows_linear_mode(os.environ.get("SEQLAB_FEW_ROWS_LINEAR"))
    try:
        yield
    finally:
        transformer.SINGLE_QUERY_MODE, transformer.FEW_ROWS_LINEAR = modes
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def within(ts: float, span: dict) -> bool:
    return span["ts"] <= ts <= span["ts"] + span["dur"]


def parse_trace(trace: dict) -> tuple[list[dict], list[dict], dict[Any, dict], list[dict]]:
    """A Chrome trace's labels (``user_annotation``), its ``sentence`` labels in order, its host launches by
    correlation id, and its device work."""
    events = [e for e in trace["traceEvents"] if e.get("ph") == "X"]
    labels = [e for e in events if e.get("cat") == "user_annotation"]
    sentences = sorted((e for e in labels if e["name"] == "sentence"), key=lambda e: e["ts"])
    launches = {
        e["args"]["correlation"]: e
        for e in events
        if e.get("cat") == "cuda_runtime" and "correlation" in e.get("args", {})
    }
    return labels, sentences, launches, device_events(events)


def split_sentences(trace: dict) -> list[dict[str, Any]]:
    """Per profiled sentence (a ``sentence`` label): its wall time, decoder steps, and per part (prologue, chunk
    graphs, eager work) the kernels launched and the GPU time they cover; plus its GPU-busy time and the names and
    durations of the chunk graphs' kernels."""
    labels, sentences, launches, device = parse_trace(trace)
    parts = [e for e in labels if e["name"] in ("seqlab.search.prologue", "seqlab.search.chunk")]
    out = []
    for s in sentences:
        mine = [p for p in parts if within(p["ts"], s)]
        found: dict[str, list[dict]] = {part: [] for part in PARTS}
        for k in device:
            launch = launches.get(k.get("args", {}).get("correlation"))
            if launch is None or not within(launch["ts"], s):
                continue
            label = next((p["name"].rsplit(".", 1)[1] for p in mine if within(launch["ts"], p)), "eager")
            found[label].append(k)
        every = [k for ks in found.values() for k in ks]
        busy = trace_device_busy_us(every)
        span_us = max(k["ts"] + k["dur"] for k in every) - min(k["ts"] for k in every) if every else 0.0
        row: dict[str, Any] = {
            "wall_us": s["dur"],
            "chunks": sum(p["name"].endswith("chunk") for p in mine),
            "busy_us": busy,
            "idle_between_us": span_us - busy,  # the GPU idle between the sentence's first and last kernels
            "chunk_kernel_us": [(k["name"], k["dur"]) for k in found["chunk"]],
        }
        for part, ks in found.items():
            row[f"{part}_kernels"] = len(ks)
            row[f"{part}_gpu_us"] = trace_device_busy_us(ks)
        out.append(row)
    return out


def chunk_sequence(trace: dict) -> list[dict[str, Any]]:
    """The kernels of one captured chunk in the order they ran (the middle chunk of the middle profiled sentence):
    name, GPU microseconds and the idle gap before each, for reading a step kernel by kernel."""
    labels, sentences, launches, device = parse_trace(trace)
    if not sentences:
        return []
    sentence = sentences[len(sentences) // 2]
    chunks = sorted(
        (e for e in labels if e["name"] == "seqlab.search.chunk" and within(e["ts"], sentence)), key=lambda e: e["ts"]
    )
    if not chunks:
        return []
    chunk = chunks[len(chunks) // 2]
    kernels = []
    for k in device:
        launch = launches.get(k.get("args", {}).get("correlation"))
        if launch is not None and within(launch["ts"], chunk):
            kernels.append(k)
    kernels.sort(key=lambda k: k["ts"])
    out, end = [], None
    for k in kernels:
        gap = 0.0 if end is None else max(k["ts"] - end, 0.0)
        out.append({"name": k["name"][:90], "us": round(k["dur"], 2), "gap_us": round(gap, 2)})
        end = k["ts"] + k["dur"]
    return out


def summarise(rows: list[dict[str, Any]], chunk: int) -> dict[str, Any]:
    """Medians over the sentences, per decoder step for the chunk graphs, and the kernels that take most of a step."""
    med = lambda key: statistics.median(r[key] for r in rows)  # noqa: E731
    steps = sum(r["chunks"] for r in rows) * chunk
    names: collections.Counter[str] = collections.Counter()
    counts: collections.Counter[str] = collections.Counter()
    for r in rows:
        for name, dur in r["chunk_kernel_us"]:
            names[name[:90]] += dur
            counts[name[:90]] += 1
    return {
        "sentences": len(rows),
        "wall_ms": med("wall_us") / 1000,
        "busy_share": statistics.median(r["busy_us"] / r["wall_us"] for r in rows),
        "steps": statistics.median(r["chunks"] * chunk for r in rows),
        "kernels_per_step": sum(r["chunk_kernels"] for r in rows) / max(steps, 1),
        "step_gpu_us": sum(r["chunk_gpu_us"] for r in rows) / max(steps, 1),
        "prologue_kernels": med("prologue_kernels"),
        "prologue_gpu_us": med("prologue_gpu_us"),
        "eager_kernels": med("eager_kernels"),
        "eager_gpu_us": med("eager_gpu_us"),
        "idle_between_us": med("idle_between_us"),
        "top_step_kernels": [
            {"name": n, "us_per_step": round(t / max(steps, 1), 2), "per_step": round(counts[n] / max(steps, 1), 2)}
            for n, t in names.most_common(15)
        ],
    }


def host_parts(model: Any, sources: list[list[int]], decode: Any, device: torch.device) -> dict[str, float]:
    """Without a profiler, per sentence (medians, us): the time from the call to the launch of the search's prologue
    (host work: the source in, finding the search) and from the host's last read of an end test to the hypothesis on
    the host (what the GPU still runs then, the result's copies and the host's work), from
    :data:`~seqlab.decoding.graphs.PART_HOOK`'s timestamps."""
    marks: list[float] = []
    before, after = [], []
    graphs.PART_HOOK = lambda name, edge: marks.append(time.perf_counter())
    try:
        for ids in sources:
            sync(device)
            marks.clear()
            start = time.perf_counter()
            decode_ids(model, [ids], decode, device, beam_size=1)
            returned = time.perf_counter()  # the hypothesis is on the host (as bench_speed's latency counts)
            sync(device)
            if marks:
                before.append(marks[0] - start)
                after.append(returned - marks[-1])
    finally:
        graphs.PART_HOOK = None
    if not before:  # no captured search ran (the CPU)
        return {"before_search_us": 0.0, "after_search_us": 0.0}
    return {"before_search_us": statistics.median(before) * 1e6, "after_search_us": statistics.median(after) * 1e6}


def profile_sentences(
    model: Any, sources: list[list[int]], decode: Any, device: torch.device, keep: Path | None = None
) -> dict:
    """The Chrome trace of batch-1 greedy searches of ``sources``, each inside a ``sentence`` label; also written to
    ``keep`` (gzipped JSON) when given."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    release_cupti_after_profiling()
    with torch.profiler.profile(activities=activities) as prof:
        for ids in sources:
            with torch.profiler.record_function("sentence"):
                decode_ids(model, [ids], decode, device, beam_size=1)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(path))
        text = path.read_text()
    if keep is not None:
        keep.parent.mkdir(parents=True, exist_ok=True)
        keep.write_bytes(gzip.compress(text.encode()))
    return json.loads(text)


def summarise_kept_trace(args: Any) -> int:
    """``--from-trace``: a kept trace's summary and one chunk's kernels, printed and written to ``--report``."""
    trace = json.loads(gzip.decompress(args.from_trace.read_bytes()))
    summary = summarise(split_sentences(trace), chunk_steps())
    summary["chunk_sequence"] = chunk_sequence(trace)
    for k in summary["chunk_sequence"]:
        print(f"{k['us']:7.2f} us  (gap {k['gap_us']:5.2f})  {k['name']}")
    print(f"{summary['kernels_per_step']:.1f} kernels / {summary['step_gpu_us']:.0f} us per step")
    if args.report:
        args.report.write_text(json.dumps(summary, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = decoding_parser(__doc__)
    ap.add_argument("--variants", default="default,compiled")
    ap.add_argument("--profiled-sentences", type=int, default=30)
    ap.add_argument("--report", type=Path, help="write the summaries (and the top kernels of a step) here, JSON")
    ap.add_argument("--traces", type=Path, help="keep each variant's profiler trace here (VARIANT.json.gz)")
    ap.add_argument(
        "--from-trace",
        type=Path,
        help="summarise a kept trace (no model, no entries), steps per chunk from SEQLAB_SEARCH_CHUNK_STEPS as it ran",
    )
    if ap.parse_args(argv).from_trace:
        return summarise_kept_trace(ap.parse_args(argv))
    args, model, decode, sources, device = parse_and_load(ap, argv)
    summaries: dict[str, dict[str, Any]] = {}
    reference: list[list[int]] | None = None  # the first variant's greedy hypotheses (batches of --batch)
    for variant in args.variants.split(","):
        with variant_env(variant):
            clear_searches()
            hyps = decode_ids(model, sources, decode, device, beam_size=1, batch_size=args.batch)
            reference = hyps if reference is None else reference
            latency = batch1_latency_ms(model, sources, decode, device, args.latency_sentences, warmup=None)
            keep = args.traces / f"{variant}.json.gz" if args.traces else None
            profiled = profile_sentences(model, sources[: args.profiled_sentences], decode, device, keep)
            rows = split_sentences(profiled)
            summary = {"latency_ms": latency, "identical": identical_fraction(hyps, reference)}
            summary.update(host_parts(model, sources[: args.latency_sentences], decode, device))
            summary.update(summarise(rows, chunk_steps()))
            summary["chunk_sequence"] = chunk_sequence(profiled)
        summaries[variant] = summary
        print(
            f"{variant}: {latency:.2f} ms (profiled {summary['wall_ms']:.2f}), identical {summary['identical']:.4f}, "
            f"host before / after the search {summary['before_search_us']:.0f} / {summary['after_search_us']:.0f} us, "
            f"GPU busy {summary['busy_share']:.0%}, "
            f"{summary['steps']:.0f} steps of {summary['kernels_per_step']:.1f} kernels / {summary['step_gpu_us']:.0f} "
            f"us; prologue {summary['prologue_kernels']:.0f} kernels / {summary['prologue_gpu_us']:.0f} us; "
            f"eager {summary['eager_kernels']:.0f} kernels / {summary['eager_gpu_us']:.0f} us; GPU idle between "
            f"kernels {summary['idle_between_us']:.0f} us",
            flush=True,
        )
        for k in summary["top_step_kernels"][:8]:
            print(f"    {k['us_per_step']:7.2f} us/step  x{k['per_step']:.2f}  {k['name']}")
    if args.report:
        args.report.write_text(json.dumps(summaries, indent=1))
    command = "python benchmarks/latency_parts.py " + " ".join(argv if argv is not None else sys.argv[1:])
    figures = {
        "batch1_greedy_latency_ms": ("latency_ms", "ms"),
        "batch1_gpu_busy_share": ("busy_share", "share of wall time"),
        "batch1_kernels_per_step": ("kernels_per_step", "kernels"),
        "batch1_step_gpu_us": ("step_gpu_us", "us"),
        "batch1_prologue_kernels": ("prologue_kernels", "kernels"),
        "batch1_prologue_gpu_us": ("prologue_gpu_us", "us"),
        "batch1_eager_kernels": ("eager_kernels", "kernels"),
        "batch1_before_search_us": ("before_search_us", "us"),
        "batch1_after_search_us": ("after_search_us", "us"),
        "batch1_idle_between_kernels_us": ("idle_between_us", "us"),
        "batch1_steps": ("steps", "decoder steps"),
        "greedy_identical_fraction": ("identical", "fraction of the first variant's hypotheses"),
    }
    entries = [
        results_io.entry(f"{metric}_{v.replace('+', '_')}{args.label}", round(s[key], 4), unit, command)
        for v, s in summaries.items()
        for metric, (key, unit) in figures.items()
    ]
    if not args.no_write:
        name = f"latency_parts_{'cuda' if device.type == 'cuda' else 'cpu'}"
        print(f"{len(entries)} entries -> {results_io.write(name, entries)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
