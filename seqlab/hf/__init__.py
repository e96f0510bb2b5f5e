"""Hugging Face encoder-decoders inside seqlab (the optional extra ``seqlab[hf]``).

* :mod:`seqlab.hf.idmap`: the map between seqlab's ids (PAD 0, BOS 1, EOS 2, UNK 3) and a model's own ids.
* :mod:`seqlab.hf.tokenizer`: the ``hf:<name_or_path>`` tokenizer kind.
* :mod:`seqlab.hf.model`: the ``hf_seq2seq`` architecture.
* :mod:`seqlab.hf.export`: ``seqlab export CKPT --hf OUT``.

Nothing here imports ``transformers`` at import time: seqlab works without the extra, and names the extra when a
user asks for these components.  Design notes: docs/hf.md.
"""

INSTALL_HINT = 'the Hugging Face components need the optional extra: pip install "seqlab[hf]"'


def require_transformers() -> None:
    """Raise an ImportError naming the extra when ``transformers`` is missing."""
    try:
        import transformers  # noqa: F401
    except ModuleNotFoundError as e:
        raise ImportError(INSTALL_HINT) from e
