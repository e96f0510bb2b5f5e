"""Side-by-side comparison of algorithms: ``seqlab compare`` runs, resumes and reports."""

from seqlab.compare.runner import CompareSpec, Run, run_compare

__all__ = ["CompareSpec", "Run", "run_compare"]
