"""``python -m seqlab.compare train ...``: the seqlab CLI, as ``seqlab compare`` starts its runs (plugins named in
``$SEQLAB_PLUGINS`` register in these subprocesses too, :mod:`seqlab.registry`).
``python -m seqlab.compare score ...`` scores a checkpoint on test sets (:mod:`seqlab.compare.score`)."""

import sys

from seqlab.cli import main

if __name__ == "__main__":
    if sys.argv[1:2] == ["score"]:
        from seqlab.compare.score import main as score_main

        sys.exit(score_main(sys.argv[2:]))
    sys.exit(main(sys.argv[1:]))
