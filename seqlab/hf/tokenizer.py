"""The ``hf`` tokenizer kind: a pretrained Hugging Face tokenizer behind seqlab's special ids.

Spelled ``tokenizer: hf:<name_or_path>`` wherever a task takes a tokenizer kind.  ``encode`` adds no special
tokens (seqlab appends EOS itself; the model adds its own source prefix and forced first token, see
:mod:`seqlab.hf.model`); ids go through :class:`~seqlab.hf.idmap.IdMap`.  Saved into the run's tokenizers folder
with ``save_pretrained``, so a run's checkpoints decode without the original path.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from seqlab.data.errors import DataError
from seqlab.data.tokenizers import TOKENIZER_TYPES, Tokenizer, strip_special
from seqlab.data.vocab import BOS_ID, SPECIAL_TOKENS
from seqlab.hf import require_transformers
from seqlab.hf.idmap import IdMap

#: the prefix of the kind string: ``hf:Helsinki-NLP/opus-mt-de-en`` or ``hf:/path/to/saved/tokenizer``
KIND_PREFIX = "hf:"


def load_hf_tokenizer(name_or_path: str | Path) -> Any:
    """``AutoTokenizer.from_pretrained`` with a one-line DataError when it fails."""
    require_transformers()
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(name_or_path))
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"cannot load a Hugging Face tokenizer ({first})", name_or_path) from None


class HFTokenizer(Tokenizer):
    """A Hugging Face tokenizer (``PreTrainedTokenizer(Fast)``) with seqlab's PAD / BOS / EOS / UNK ids."""

    kind = "hf"
    HF_DIR = "hf"

    def __init__(self, hf_tokenizer: Any, meta: dict[str, Any] | None = None):
        self.hf = hf_tokenizer
        try:
            self.idmap = IdMap(
                hf_tokenizer.pad_token_id, hf_tokenizer.eos_token_id, hf_tokenizer.unk_token_id, len(hf_tokenizer)
            )
        except ValueError as e:
            raise DataError(f"Hugging Face tokenizer {getattr(hf_tokenizer, 'name_or_path', '')!r}: {e}") from None
        self._to_model = self.idmap.to_model()
        self._from_model = self.idmap.from_model()
        self.meta = dict(meta or {})

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path) -> HFTokenizer:
        return cls(load_hf_tokenizer(name_or_path), {"name_or_path": str(name_or_path)})

    @classmethod
    def from_kind(cls, argument: str) -> HFTokenizer:
        """The kind ``hf:<name_or_path>`` (``argument`` is the name or path)."""
        return cls.from_pretrained(argument)

    @property
    def vocab_size(self) -> int:
        return self.idmap.seqlab_size

    def to_model_ids(self, ids: Iterable[int]) -> list[int]:
        """The model's ids of seqlab ids (as they are: no stripping)."""
        return [self._to_model[int(i)] for i in ids]

    def from_model_ids(self, ids: Iterable[int]) -> list[int]:
        return [self._from_model[int(i)] for i in ids]

    def id_to_token(self, i: int) -> str:
        return SPECIAL_TOKENS[BOS_ID] if i == BOS_ID else self.hf.convert_ids_to_tokens(self._to_model[i])

    def encode(self, text: str) -> list[int]:
        return self.from_model_ids(self.hf(text, add_special_tokens=False)["input_ids"])

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        rows = self.hf(list(texts), add_special_tokens=False)["input_ids"]
        return [self.from_model_ids(r) for r in rows]

    def decode(self, ids: Iterable[int]) -> str:
        return self.hf.decode(self.to_model_ids(strip_special(ids)), skip_special_tokens=True)

    def _write_files(self, directory: Path) -> dict[str, Any]:
        self.hf.save_pretrained(str(directory / self.HF_DIR))
        return {"hf_dir": self.HF_DIR}

    @classmethod
    def _from_header(cls, header: dict[str, Any], directory: Path) -> Tokenizer:
        return cls(load_hf_tokenizer(directory / header.get("hf_dir", cls.HF_DIR)), header.get("meta"))


TOKENIZER_TYPES.setdefault(HFTokenizer.kind, HFTokenizer)
