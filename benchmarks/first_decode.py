"""What the first decodes of a new process cost: batch-1 greedy at the defaults and on the compiled path.

A captured search is built on the first source of each bucketed shape (warm-up, then the capture of its prologue and
chunks), and on the compiled path (``SEQLAB_COMPILE_DECODE=1``) its decoder step, encoder and greedy choice are
compiled first. This times, in a fresh process per mode, four batch-1 greedy decodes: the first source (``first``),
the same source again (``again``: a replay), a source of another width bucket (``new_bucket``: a new capture, and on the
compiled path whatever it recompiles), and that one again. Modes (``--modes``):

- ``default``: the library's defaults;
- ``compiled``: the compiled path, with an empty torch.compile cache (``TORCHINDUCTOR_CACHE_DIR`` in a new folder);
- ``compiled_warm``: the compiled path in a later process that finds the ``compiled`` mode's cache on disk.

Entries (``benchmarks/results/first_decode_<device>.json``): ``first_decode_s_<mode>``, ``again_decode_ms_<mode>``,
``new_bucket_decode_s_<mode>`` and ``new_bucket_again_decode_ms_<mode>``.

    python benchmarks/first_decode.py RUN/checkpoint_last.pt --data DATA
    python benchmarks/first_decode.py --random-model configs/multi30k_transformer.yaml
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from chunk_steps import decoding_parser, parse_and_load  # beside this script

from seqlab.bench import results as results_io
from seqlab.bench.timing import sync
from seqlab.decoding.graphs import SOURCE_BUCKET, round_up
from seqlab.train.evaluate import decode_ids
from seqlab.utils import resolve_device

MODES = ("default", "compiled", "compiled_warm")


def two_buckets(sources: list[list[int]]) -> tuple[list[int], list[int]]:
    """The first source, and the first one after it whose width falls in another source bucket."""
    first = sources[0]
    bucket = round_up(len(first), SOURCE_BUCKET)
    other = next((s for s in sources[1:] if round_up(len(s), SOURCE_BUCKET) != bucket), None)
    if other is None:
        raise SystemExit(f"first_decode.py: every source falls in the {bucket}-token bucket; give more sources")
    return first, other


def time_decodes(model: Any, decode: Any, sources: list[list[int]], device: Any) -> dict[str, float]:
    """Seconds of each of the four batch-1 greedy decodes, in order (the hypothesis on the host)."""
    first, other = two_buckets(sources)
    out = {}
    for name, ids in (("first", first), ("again", first), ("new_bucket", other), ("new_bucket_again", other)):
        sync(device)
        start = time.perf_counter()
        decode_ids(model, [ids], decode, device, beam_size=1)
        out[name] = time.perf_counter() - start
    return out


def run_mode(mode: str, argv: list[str], cache: Path) -> dict[str, float]:
    """One mode in a fresh process (this script with ``--child``), its timings from its last stdout line."""
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(cache))
    env["SEQLAB_COMPILE_DECODE"] = "0" if mode == "default" else "1"
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--child"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"first_decode.py: mode {mode} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = decoding_parser(__doc__)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # one mode, in the process it starts
    args = ap.parse_args(argv)
    if args.child:
        _, model, decode, sources, device = parse_and_load(ap, argv)
        print(json.dumps(time_decodes(model, decode, sources, device)))
        return 0
    parent = [a for a in argv if a != "--child"]
    modes = args.modes.split(",")
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        raise SystemExit(f"unknown modes {unknown}: of {', '.join(MODES)}")
    entries, command = [], "python benchmarks/first_decode.py " + " ".join(parent)
    with tempfile.TemporaryDirectory() as tmp:
        for mode in modes:
            times = run_mode(mode, parent, Path(tmp) / "inductor")
            print(
                f"{mode:14} first {times['first']:7.2f} s   again {times['again'] * 1e3:7.2f} ms   "
                f"new bucket {times['new_bucket']:7.2f} s   again {times['new_bucket_again'] * 1e3:7.2f} ms",
                flush=True,
            )
            label = f"{mode}{args.label}"
            entries += [
                results_io.entry(f"first_decode_s_{label}", round(times["first"], 3), "s", command),
                results_io.entry(f"again_decode_ms_{label}", round(times["again"] * 1e3, 3), "ms", command),
                results_io.entry(f"new_bucket_decode_s_{label}", round(times["new_bucket"], 3), "s", command),
                results_io.entry(
                    f"new_bucket_again_decode_ms_{label}", round(times["new_bucket_again"] * 1e3, 3), "ms", command
                ),
            ]
    if not args.no_write:
        name = f"first_decode_{'cuda' if resolve_device(args.device).type == 'cuda' else 'cpu'}"
        print(f"{len(entries)} entries -> {results_io.write(name, entries)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
