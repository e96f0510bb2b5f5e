"""How many values seqlab's own code reads back from tensors during one training step, per algorithm (CPU).

On a GPU each such read (``float(t)``, ``int(t)``, ``bool(t)``, ``t.item()``, ``t.tolist()``) makes the host wait
for every kernel queued so far, so the GPU idles while the host queues the next ones; host-bound steps (the
sampling and critic algorithms) pay for each. This counts them where they happen: one step of each algorithm on a
tiny Transformer and the symbol-reversal task of the tests (after 3 untimed steps), the reads asked for by seqlab's
code, by site. PyTorch's own reads (Adam's step counters, which live on the host) are not counted. On the CPU
every tensor is a host tensor, so a count includes reads of tensors that stay on the host on a GPU too: the sites
say which.

    python benchmarks/host_reads.py --algorithms pg,erac,raml,interpolation,vaml [--sites]

Entries ``<algo>_host_reads_per_step`` in benchmarks/results/host_reads_cpu.json.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
READS = ("item", "__float__", "__int__", "__bool__", "__index__", "tolist")


def tests_helpers():
    """tests/helpers.py (the tiny task the tests train on), loaded by its path."""
    spec = importlib.util.spec_from_file_location("seqlab_tests_helpers", REPO / "tests" / "helpers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def warmed_up(algorithm: str, work: Path, **overrides: str) -> tuple[Any, Any]:
    """A trainer of ``algorithm`` on the tests' tiny task (``overrides`` on top) after three untimed steps, and the
    fourth batch, the one to examine."""
    from seqlab.config import load_config
    from seqlab.data.batching import collate
    from seqlab.train.trainer import Trainer

    settings = tests_helpers().tiny_overrides(work, algorithm, **{"algorithm.name": algorithm, **overrides})
    trainer = Trainer(load_config(None, settings), console=False)
    trainer.sampler.set_epoch(0)
    batches = [collate(trainer.train_data, indices) for indices in list(trainer.sampler)[:4]]
    for batch in batches[:3]:
        trainer.train_step(batch)
    return trainer, batches[3]


def count_reads(algorithm: str, work: Path) -> collections.Counter:
    """(read, seqlab site) -> count over one training step of ``algorithm`` on the tests' tiny task."""
    trainer, batch = warmed_up(algorithm, work)
    sites: collections.Counter = collections.Counter()
    originals = {name: getattr(torch.Tensor, name) for name in READS}

    def counting(name: str):
        def read(self, *args, **kwargs):
            caller = traceback.extract_stack(limit=2)[0]  # the frame that asked for the value
            if "/seqlab/" in caller.filename:  # not PyTorch's own (e.g. Adam's step counters)
                sites[(name, f"{caller.filename.split('/seqlab/')[-1]}:{caller.lineno}")] += 1
            return originals[name](self, *args, **kwargs)

        return read

    try:
        for name in READS:
            setattr(torch.Tensor, name, counting(name))
        trainer.train_step(batch)
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
    return sites


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--algorithms", default="mle,pg,erac,ac,raml,interpolation,vaml")
    ap.add_argument("--sites", action="store_true", help="print where each read happens")
    ap.add_argument("--label", default="", help="suffix of the metric names (e.g. _before)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    from seqlab.bench import results as results_io

    entries = []
    with tempfile.TemporaryDirectory() as tmp:
        for algorithm in [a for a in args.algorithms.split(",") if a]:
            sites = count_reads(algorithm, Path(tmp))
            total = sum(sites.values())
            print(f"{algorithm:16s} {total:4d} host reads in seqlab code per training step")
            if args.sites:
                for (name, site), count in sorted(sites.items(), key=lambda kv: -kv[1]):
                    print(f"    {count:4d}  {name:10s} {site}")
            entries.append(results_io.entry(f"{algorithm}_host_reads_per_step{args.label}", total, "reads"))
    if not args.no_write:
        print("wrote", results_io.write("host_reads_cpu", entries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
