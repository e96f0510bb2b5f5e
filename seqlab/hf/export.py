"""``seqlab export CKPT --hf OUT``: an ``hf_seq2seq`` checkpoint as a Hugging Face model folder.

The folder holds the weights (``save_pretrained``: safetensors, in the model's own id space: seqlab never
permutes weights, only ids at the model boundary), the tokenizer, a generation config under which ``generate``
searches the distribution seqlab decoded from (the model's pad token suppressed, the forced first token), and a
model card (README.md): base model, algorithm, data, metrics with their sacrebleu signatures, seed.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from seqlab.config import ConfigError


def _results(checkpoint: Path) -> dict[str, Any] | None:
    path = checkpoint.resolve().parent / "results.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _metrics_section(results: dict[str, Any] | None) -> list[str]:
    if not results:
        return ["No results.json next to the checkpoint (the run had not finished): no scores."]
    lines = ["| split | metric | value | sacrebleu signature |", "|---|---|---|---|"]
    signatures = results.get("signatures", {})
    for split in ("valid", "test"):
        for name, value in (results.get(split) or {}).items():
            sig = signatures.get(split, {}).get(name, "").replace("|", "\\|")  # a table cell: pipes escaped
            lines.append(f"| {split} | {name} | {value:.2f} | {f'`{sig}`' if sig else ''} |")
    beam = results.get("beam_size")
    lines += [
        "",
        f"Decoded with beam size {beam} from the run's best validation checkpoint; {results.get('steps')} "
        "training steps.",
    ]
    return lines


def model_card(cfg: Any, checkpoint: Path, results: dict[str, Any] | None) -> str:
    """README.md of an exported model: what trained it on which data, its scores and how they were computed."""
    base = cfg.model.options.get("name_or_path", "?")
    algo_opts = json.dumps(cfg.algorithm.options) if cfg.algorithm.options else "defaults"
    from seqlab import __version__

    lines = [
        "---",
        "library_name: transformers",
        "tags: [seqlab, seq2seq]",
        *([f"base_model: {base}"] if not Path(str(base)).exists() else []),  # a hub name, not a local folder
        "---",
        "",
        f"# {Path(str(checkpoint)).resolve().parent.name}",
        "",
        f"Fine-tuned from `{base}` with seqlab {__version__} and exported by `seqlab export {checkpoint} --hf ...`.",
        "",
        "## Training",
        "",
        f"- algorithm: `{cfg.algorithm.name}` (options: {algo_opts})",
        f"- data: task `{cfg.task.name}` with options `{json.dumps(cfg.task.options)}`",
        f"- start: {'`' + cfg.train.init_from + '`' if cfg.train.init_from else 'the base model'}",
        f"- seed: {cfg.train.seed}; learning rate {cfg.train.lr:g}; label smoothing {cfg.train.label_smoothing:g}",
        f"- model options: `{json.dumps(cfg.model.options)}`",
        "",
        "## Results",
        "",
        *_metrics_section(results),
        "",
        "## Use",
        "",
        "```python",
        "from transformers import AutoModelForSeq2SeqLM, AutoTokenizer",
        "tokenizer = AutoTokenizer.from_pretrained(PATH)",
        "model = AutoModelForSeq2SeqLM.from_pretrained(PATH)",
        "out = model.generate(**tokenizer(['...'], return_tensors='pt', padding=True), num_beams=5)",
        "print(tokenizer.batch_decode(out, skip_special_tokens=True))",
        "```",
        "",
    ]
    return "\n".join(lines)


def export_hf(checkpoint: str | Path, out: str | Path, device: str = "cpu") -> Path:
    """Write ``checkpoint`` (an ``hf_seq2seq`` run's) as a Hugging Face model folder ``out``; returns ``out``."""
    from seqlab.hf.model import HFSeq2Seq
    from seqlab.inference import load_checkpoint_model

    checkpoint, out = Path(checkpoint), Path(out)
    loaded = load_checkpoint_model(checkpoint, device)
    model = loaded.model
    if not isinstance(model, HFSeq2Seq):
        raise ConfigError(
            f"{checkpoint}: --hf exports hf_seq2seq checkpoints only; this one is model.arch={loaded.config.model.arch}"
        )
    out.mkdir(parents=True, exist_ok=True)
    hf = model.hf
    saved_generation = hf.generation_config
    generation = copy.deepcopy(saved_generation)
    settings = model.generation_settings()
    generation.suppress_tokens = sorted(set(generation.suppress_tokens or []) | set(settings.pop("suppress_tokens")))
    for key, value in settings.items():
        setattr(generation, key, value)
    hf.generation_config = generation
    try:
        hf.save_pretrained(str(out))
    finally:
        hf.generation_config = saved_generation
    tokenizer = getattr(loaded.tgt_tokenizer, "hf", None)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out))
    (out / "README.md").write_text(model_card(loaded.config, checkpoint, _results(checkpoint)), encoding="utf-8")
    return out
