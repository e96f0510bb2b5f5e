"""``python -m seqlab.compare train ...``: the seqlab CLI with every task plugin (:mod:`seqlab.tasks`) registered.

``seqlab compare`` starts its runs through this entry point, so tasks registered outside
:mod:`seqlab.data.tasks` (summarization, AESLC, captioning) train in its subprocesses too.
``python -m seqlab.compare score ...`` scores a checkpoint on test sets (:mod:`seqlab.compare.score`)."""

import sys

import seqlab.tasks  # noqa: F401  (registration)
from seqlab.cli import main

if __name__ == "__main__":
    if sys.argv[1:2] == ["score"]:
        from seqlab.compare.score import main as score_main

        sys.exit(score_main(sys.argv[2:]))
    sys.exit(main(sys.argv[1:]))
