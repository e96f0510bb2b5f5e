"""``python -m seqlab.compare train ...``: the seqlab CLI with every task plugin (:mod:`seqlab.tasks`) registered.

``seqlab compare`` starts its runs through this entry point, so tasks registered outside
:mod:`seqlab.data.tasks` (summarization, AESLC, captioning) train in its subprocesses too."""

import sys

import seqlab.tasks  # noqa: F401  (registration)
from seqlab.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
