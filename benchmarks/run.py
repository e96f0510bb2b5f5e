#!/usr/bin/env python
"""The benchmark driver: ``python benchmarks/run.py SUITE [STEP ...] [--set NAME=VALUE] [--dry-run]``.

``python benchmarks/run.py`` lists the suites (benchmarks/suites/*.yaml); benchmarks/README.md describes them and
the device steps.  The driver itself is :mod:`seqlab.bench.suite`; it puts the checkout on every step's PYTHONPATH.
"""

import sys
from pathlib import Path

try:
    from seqlab.bench.suite import main
except ModuleNotFoundError:  # seqlab not installed (a device copy of the checkout): the checkout itself
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from seqlab.bench.suite import main

if __name__ == "__main__":
    sys.exit(main())
