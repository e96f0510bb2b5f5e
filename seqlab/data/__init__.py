"""Data: corpora readers, tokenizers and length-bucketed batching (tasks: :mod:`seqlab.tasks`)."""

from seqlab.data.batching import (
    Batch,
    EncodedCorpus,
    RaggedIds,
    TokenBatchSampler,
    collate,
    encode_corpus,
    iterate_batches,
)
from seqlab.data.corpus import (
    Corpus,
    read_corpus,
    read_jsonl,
    read_lines,
    read_parallel,
    read_tsv,
    write_parallel,
)
from seqlab.data.errors import DataError, DataWarning
from seqlab.data.tokenizers import (
    CharTokenizer,
    SentencePieceTokenizer,
    SymbolTokenizer,
    Tokenizer,
    build_tokenizers,
    load_tokenizer,
)
from seqlab.data.vocab import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID

__all__ = [
    "BOS_ID",
    "EOS_ID",
    "PAD_ID",
    "SPECIAL_TOKENS",
    "UNK_ID",
    "Batch",
    "CharTokenizer",
    "Corpus",
    "DataError",
    "DataWarning",
    "EncodedCorpus",
    "RaggedIds",
    "SentencePieceTokenizer",
    "SymbolTokenizer",
    "TokenBatchSampler",
    "Tokenizer",
    "build_tokenizers",
    "collate",
    "encode_corpus",
    "iterate_batches",
    "load_tokenizer",
    "read_corpus",
    "read_jsonl",
    "read_lines",
    "read_parallel",
    "read_tsv",
    "write_parallel",
]
