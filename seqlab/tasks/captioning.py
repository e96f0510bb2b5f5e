"""Image captioning from precomputed image features and several reference captions per image.

Task "captioning" (model "nic", :mod:`seqlab.models.captioning`):

* ``features``: a ``.npy`` [N, F] (image ids "0".."N-1"), ``.npz`` or ``.pt`` (``features`` + ``ids``) file;
* captions: ``captions`` (one file, split into train / valid / test by a stable hash of the image id,
  ``valid_percent`` / ``test_percent``) or ``train`` / ``valid`` / ``test`` files.  A caption file is a
  TSV ``image_id<TAB>caption`` (several rows per image) or JSONL ``{"image_id": ..., "caption": "..."}``
  / ``{"image_id": ..., "captions": [...]}``.

The source of an example is its image id; the source vocabulary lists the ids in feature-row order, so
image token ``NUM_SPECIAL + row`` is row ``row`` of the feature matrix.  Captions are lowercased (option
``lowercase``) and split into words and punctuation; references are normalised the same way.  Metric:
BLEU-4 against all captions of an image (sacrebleu, multi-reference).

Multi-reference rewards: the trainer's batches carry one caption per row, so the task records, for every
training caption, all captions of its image; the reward ``bleu_multiref`` (registered here) scores a
sequence against all of them (sentence BLEU with multi-reference clipping and closest-length brevity
penalty).  Use ``algorithm.options.reward=bleu_multiref``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from seqlab.data.corpus import Corpus, read_lines
from seqlab.data.errors import DataError
from seqlab.data.tokenizers import HEADER, SymbolTokenizer, Tokenizer, load_tokenizer, train_tokenizer
from seqlab.data.vocab import EOS_ID, PAD_ID, SPECIAL_TOKENS
from seqlab.models.captioning import load_features
from seqlab.rewards import register_reward, sentence_bleu
from seqlab.tasks.base import TaskData, register_task, stable_hash, subsample

WORD = re.compile(r"[\w']+|[^\w\s]")


def normalize_caption(text: str, lowercase: bool = True) -> str:
    """Words and punctuation separated by single spaces (optionally lowercased)."""
    return " ".join(WORD.findall(text.lower() if lowercase else text))


def read_captions(path: str | Path) -> list[tuple[str, str]]:
    """(image_id, caption) pairs of a TSV or JSONL caption file, in file order."""
    path = Path(path)
    lines = read_lines(path)
    jsonl = path.name.removesuffix(".gz").endswith((".jsonl", ".json"))
    out: list[tuple[str, str]] = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if jsonl:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"malformed JSON ({e.msg})", path, i) from None
            if not isinstance(obj, dict) or "image_id" not in obj or not ({"caption", "captions"} & set(obj)):
                raise DataError("expected an object with 'image_id' and 'caption' or 'captions'", path, i)
            caps = obj.get("captions", obj.get("caption"))
            caps = [caps] if isinstance(caps, str) else caps
            if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
                raise DataError("'caption(s)' must be a string or a list of strings", path, i)
            out += [(str(obj["image_id"]), c) for c in caps]
        else:
            cols = line.split("\t")
            if len(cols) != 2:
                raise DataError(f"expected 2 tab-separated columns (image_id, caption), found {len(cols)}", path, i)
            out.append((cols[0].strip(), cols[1]))
    return out


def _corpus(pairs: list[tuple[str, str]], known: set[str], lowercase: bool, name: str, where: Path | str) -> Corpus:
    sources, targets = [], []
    for image, caption in pairs:
        if image not in known:
            raise DataError(f"image id {image!r} has no feature vector", where)
        cap = normalize_caption(caption, lowercase)
        if cap:
            sources.append(image)
            targets.append(cap)
    if not sources:
        raise DataError(f"no captions in the {name} split", where)
    return Corpus(sources, targets, name=name)  # grouped by image id: every caption of an image is a reference


def image_tokenizer(ids: list[str]) -> SymbolTokenizer:
    """Source vocabulary: the special tokens, then the image ids in feature-row order."""
    for i in ids:
        if not i or any(c.isspace() for c in i) or i in SPECIAL_TOKENS:
            raise DataError(f"image id {i!r} cannot be a token (empty, whitespace or a special token)")
    return SymbolTokenizer(list(SPECIAL_TOKENS) + list(ids), {"image_ids": True})


def _tokenizers(
    cache_dir: Path, ids: list[str], train: Corpus, min_freq: int, vocab_size: int | None
) -> tuple[Tokenizer, Tokenizer]:
    src_dir, tgt_dir = cache_dir / "src", cache_dir / "tgt"
    if (src_dir / HEADER).is_file() and (tgt_dir / HEADER).is_file():
        src, tgt = load_tokenizer(src_dir), load_tokenizer(tgt_dir)
        if src.vocab_size != len(ids) + len(SPECIAL_TOKENS) or any(
            src.id_to_token(len(SPECIAL_TOKENS) + r) != i for r, i in enumerate(ids)
        ):
            raise DataError(
                "cached image-id vocabulary does not match the feature file (delete it to rebuild)", src_dir
            )
        return src, tgt
    src = image_tokenizer(ids)
    tgt = train_tokenizer("symbol", train.targets, vocab_size=vocab_size, min_freq=min_freq)
    src.save(src_dir)
    tgt.save(tgt_dir)
    return src, tgt


# ---------------------------------------------------------------------------------------------- rewards
class ReferenceSets:
    """For each training caption (as target ids), the ids of every caption of the same image."""

    def __init__(self) -> None:
        self.groups: dict[tuple[int, ...], int] = {}
        self.refs: list[list[list[int]]] = []

    def set(self, corpus: Corpus, tokenizer: Tokenizer) -> None:
        self.groups, self.refs = {}, [[] for _ in range(corpus.num_groups)]
        for target, g in zip(corpus.targets, corpus.group, strict=True):
            ids = tokenizer.encode(target)
            self.refs[g].append(ids)
            self.groups.setdefault(tuple(ids), g)

    def expand(self, ref: torch.Tensor) -> torch.Tensor:
        """[N, T] single references -> [N, K, T'] every reference of each row's image (all-PAD rows: missing)."""
        rows = []
        for r in ref.tolist():
            content = []
            for t in r:
                if t in (EOS_ID, PAD_ID):
                    break
                content.append(t)
            g = self.groups.get(tuple(content))
            rows.append(self.refs[g] if g is not None else [content])
        k = max(len(r) for r in rows)
        width = max(len(c) for r in rows for c in r) + 1
        out = torch.full((len(rows), k, width), PAD_ID, dtype=torch.long)
        for n, refs in enumerate(rows):
            for j, c in enumerate(refs):
                out[n, j, : len(c)] = torch.tensor(c, dtype=torch.long)
                out[n, j, len(c)] = EOS_ID
        return out.to(ref.device)


#: the reference sets of the captioning task loaded last in this process
REFERENCE_SETS = ReferenceSets()


def multi_reference_bleu(hyp: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Sentence BLEU-4 in [0, 1] against every caption of each row's image (see the module docstring)."""
    if isinstance(ref, torch.Tensor) and ref.dim() == 2:
        ref = REFERENCE_SETS.expand(ref)
    return sentence_bleu(hyp, ref)


register_reward("bleu_multiref")(multi_reference_bleu)


# ---------------------------------------------------------------------------------------------- the task
@dataclass
class CaptioningOptions:
    features: str
    captions: str | None = None
    train: str | None = None
    valid: str | None = None
    test: str | None = None
    valid_percent: float = 5.0
    test_percent: float = 5.0
    lowercase: bool = True
    min_freq: int = 1
    vocab_size: int | None = None
    max_train: int | None = None
    salt: str = "seqlab-captioning"


@register_task("captioning", CaptioningOptions)
def captioning(options: CaptioningOptions, cache_dir: Path) -> TaskData:
    """Captions from image features (see the module docstring for the options)."""
    opt = dataclasses.asdict(options)
    _, ids = load_features(opt["features"])
    known = set(ids)
    lower = bool(opt["lowercase"])
    if opt["captions"]:
        pairs = read_captions(opt["captions"])
        vp, tp = float(opt["valid_percent"]), float(opt["test_percent"])
        if vp <= 0 or tp <= 0 or vp + tp >= 100:
            raise DataError("task captioning: valid_percent and test_percent must be > 0 and sum below 100")
        split_of = {}
        for image in dict.fromkeys(i for i, _ in pairs):
            bucket = stable_hash(image, opt["salt"]) % 10_000 / 100.0
            split_of[image] = "test" if bucket < tp else "valid" if bucket < tp + vp else "train"
        corpora = {
            s: _corpus([p for p in pairs if split_of[p[0]] == s], known, lower, f"captioning/{s}", opt["captions"])
            for s in ("train", "valid", "test")
        }
    else:
        missing = [s for s in ("train", "valid", "test") if not opt[s]]
        if missing:
            raise DataError(
                f"task captioning: give 'captions' (one file) or 'train', 'valid' and 'test' "
                f"(missing {', '.join(missing)})"
            )
        corpora = {
            s: _corpus(read_captions(opt[s]), known, lower, f"captioning/{s}", opt[s])
            for s in ("train", "valid", "test")
        }
    train = subsample(corpora["train"], opt["max_train"])
    src_tok, tgt_tok = _tokenizers(Path(cache_dir), ids, train, int(opt["min_freq"]), opt["vocab_size"])
    REFERENCE_SETS.set(train, tgt_tok)
    return TaskData(
        train,
        corpora["valid"],
        corpora["test"],
        src_tok,
        tgt_tok,
        ["bleu"],
        "captioning",
        {"images": len(ids), "features": str(opt["features"])},
    )
