"""What the eager and the fixed-shape beam searches share: the GNMT length penalty, and when a source's result is
settled.

The beam search keeps finished hypotheses in the beam with a frozen score and ranks the ``k`` it ends with by
score / length penalty.  A source whose beam still holds a live hypothesis is searched on, even when that hypothesis
can no longer change the result; a source's result is *settled* once it cannot change.  For the best result alone
(``n_best`` 1) the searches stop when every source is settled, with the hypotheses a search to the end would return.

Why the settled result is final: let F be the finished hypothesis of the highest normalised score s_F / lp(|F|) in a
source's beam, and let every live hypothesis h have a raw score below s_F and an *optimistic bound* below F's
normalised score.  The bound is s_h / lp(limit_h): later tokens only lower a raw score (log-probabilities are <= 0),
and the penalty grows with the length, at most to the row's length limit.  Then no descendant of a live hypothesis
can score above F, raw or normalised.  F is never pushed out of the beam: a finished hypothesis continues with PAD
at no cost, so only candidates of a higher raw score could displace it, and there are fewer than ``k`` of those (the
other finished ones).  A live hypothesis, now or later, never outranks it (its normalised score now is at most its
bound).  So the search's best hypothesis stays F, to the end.
"""

from __future__ import annotations

import torch


def gnmt_length_penalty(lengths: torch.Tensor, alpha: float) -> torch.Tensor:
    """((5 + |y|) / 6) ** alpha (Wu et al. 2016)."""
    return ((5.0 + lengths.float()) / 6.0) ** alpha


def settled_sources(
    scores: torch.Tensor, lengths: torch.Tensor, done: torch.Tensor, limits: torch.Tensor, alpha: float
) -> torch.Tensor:
    """[b] whether each source's best hypothesis can no longer change (module docstring).  ``scores`` [b, k] raw
    (unnormalised) beam scores; ``lengths``, ``done`` and ``limits`` (each row's length limit, EOS included) [b * k].
    A source with every hypothesis finished is settled; one with none finished is not.  A negative ``alpha`` (a
    penalty that shrinks with the length) has no such bound: only finished sources are settled then."""
    b, k = scores.shape
    finished = done.view(b, k)
    if alpha < 0:
        return finished.all(1)
    normalized = scores / gnmt_length_penalty(lengths, alpha).view(b, k)
    best_norm, best_slot = normalized.masked_fill(~finished, float("-inf")).max(1, keepdim=True)
    best_raw = scores.gather(1, best_slot)
    bound = scores / gnmt_length_penalty(limits, alpha).view(b, k)
    could_change = ~finished & ((scores >= best_raw) | (bound >= best_norm))
    return finished.any(1) & ~could_change.any(1)
