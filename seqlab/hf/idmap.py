"""The map between seqlab's token ids and a Hugging Face model's (and tokenizer's) own ids.

seqlab reads PAD 0, BOS 1, EOS 2, UNK 3 as constants everywhere (decoding, the loss, proposals, rewards), while
Marian, T5, BART and NLLB each put their special tokens elsewhere.  So seqlab ids are a permutation of the model's
ids at the model boundary, plus one slot:

* seqlab 0 (PAD), 2 (EOS), 3 (UNK) are the model's pad, eos and unk tokens;
* seqlab 1 (BOS) is an extra slot: as a decoder *input* it is the model's ``decoder_start_token_id``; as an
  output it is never generated nor scored (seqlab masks BOS), so its logit column is a placeholder;
* seqlab 4, 5, ... are the model's other ids in increasing order (the decoder-start token too, when it is a token
  of its own, e.g. ``<s>``: the model may generate it as Hugging Face's generate may).

So ``seqlab_size = model_size + 1`` and the distribution over seqlab ids without PAD and BOS is exactly the
model's distribution without its pad token.
"""

from __future__ import annotations

from dataclasses import dataclass

from seqlab.data.vocab import BOS_ID, EOS_ID, FIRST_REGULAR_ID, PAD_ID, UNK_ID


@dataclass(frozen=True)
class IdMap:
    """seqlab ids <-> model ids for a model vocabulary of ``size`` ids with the given pad / eos / unk ids."""

    pad: int
    eos: int
    unk: int
    size: int

    def __post_init__(self) -> None:
        roles = {"pad": self.pad, "eos": self.eos, "unk": self.unk}
        missing = [k for k, v in roles.items() if v is None]
        if missing:
            raise ValueError(
                f"the Hugging Face tokenizer / model has no {' or '.join(missing)} token; seqlab needs "
                "pad, eos and unk tokens (PAD, EOS and UNK roles)"
            )
        if len(set(roles.values())) != 3:
            raise ValueError(f"the pad, eos and unk tokens must be distinct ids, got {roles}")
        bad = [k for k, v in roles.items() if not 0 <= v < self.size]
        if bad:
            raise ValueError(f"{bad[0]} id {roles[bad[0]]} is outside the vocabulary of {self.size} ids")

    @property
    def seqlab_size(self) -> int:
        return self.size + 1

    def regular(self) -> list[int]:
        """The model's ids that take seqlab ids 4, 5, ... (in this order)."""
        special = {self.pad, self.eos, self.unk}
        return [h for h in range(self.size) if h not in special]

    def to_model(self, decoder_start: int | None = None) -> list[int]:
        """Model id of every seqlab id; the BOS slot is ``decoder_start`` (default: pad, a placeholder)."""
        start = self.pad if decoder_start is None else decoder_start
        out = [0] * FIRST_REGULAR_ID
        out[PAD_ID], out[BOS_ID], out[EOS_ID], out[UNK_ID] = self.pad, start, self.eos, self.unk
        return out + self.regular()

    def from_model(self) -> list[int]:
        """seqlab id of every model id."""
        out = [0] * self.size
        for i, h in enumerate(self.to_model()):
            if i != BOS_ID:
                out[h] = i
        return out
