"""Helpers of the benchmark scripts in ``benchmarks/``: result entries (:mod:`seqlab.bench.results`), step timing
(:mod:`seqlab.bench.timing`) and the suite driver behind ``python benchmarks/run.py`` (:mod:`seqlab.bench.suite`)."""
