"""Command line: ``seqlab train | evaluate | translate | quickstart | ...``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

QUICKSTART_OVERRIDES = [
    "run_dir=runs/quickstart",
    "task.name=g2p-cmudict",
    "task.options.max_train=40000",
    "model.arch=transformer",
    "model.options={d_model: 128, n_heads: 4, ffn_dim: 512, encoder_layers: 2, decoder_layers: 2, dropout: 0.1}",
    "train.device=cpu",
    "train.max_tokens=3000",
    "train.lr=0.002",
    "train.warmup_steps=300",
    "train.max_minutes=2.5",
    "train.max_epochs=50",
    "train.eval_every_steps=400",
    "train.eval_max_examples=500",
    "train.label_smoothing=0.1",
    "decode.beam_size=1",
    "decode.batch_size=512",
]


def _print_table(title: str, results: dict[str, Any]) -> None:
    rows = [(split, name, value) for split in ("valid", "test") for name, value in results.get(split, {}).items()]
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title)
        for col in ("split", "metric", "value"):
            table.add_column(col)
        for split, name, value in rows:
            table.add_row(split, name, f"{value:.2f}")
        Console().print(table)
    except ImportError:
        print(title)
        for split, name, value in rows:
            print(f"{split:6s} {name:8s} {value:8.2f}")


def cmd_train(args: argparse.Namespace) -> int:
    from seqlab.config import load_config
    from seqlab.train.trainer import train

    overrides = list(args.overrides)
    if args.allow_short_schedules:
        overrides.append("train.allow_short_schedules=true")
    cfg = load_config(args.config, overrides)
    results = train(cfg)
    if results.get("test"):
        _print_table(f"{cfg.algorithm.name} on {cfg.task.name} ({cfg.run_dir})", results)
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    from seqlab.config import load_config
    from seqlab.train.trainer import train

    cfg = load_config(None, QUICKSTART_OVERRIDES + list(args.overrides))
    print(f"seqlab quickstart: Transformer G2P on CMUdict, CPU, {cfg.train.max_minutes} min of training -> "
          f"{cfg.run_dir}")
    results = train(cfg)
    _print_table("seqlab quickstart: grapheme-to-phoneme (CMUdict)", results)
    return 0


def _load_for_inference(checkpoint: str, device: str) -> tuple[Any, Any, Any, Any]:
    from seqlab.inference import load_checkpoint_model

    loaded = load_checkpoint_model(checkpoint, device)
    return loaded.config, loaded.model, (loaded.src_tokenizer, loaded.tgt_tokenizer), loaded.device


def _nat_decoding(model: Any, args: argparse.Namespace, device: Any) -> None:
    """Length-parallel decoding for NAT checkpoints: ``--length-delta`` candidates, rescored by ``--rescorer``."""
    if getattr(args, "length_delta", None) is None and getattr(args, "rescorer", None) is None:
        return
    if not hasattr(model, "set_rescorer"):
        raise ValueError("--length-delta / --rescorer apply to NAT checkpoints only")
    if args.length_delta is not None:
        model.cfg.length_delta = args.length_delta
    if args.rescorer:
        from seqlab.inference import load_checkpoint_model

        model.set_rescorer(load_checkpoint_model(args.rescorer, device).model)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from seqlab.config import apply_overrides, config_from_dict
    from seqlab.data.tasks import load_task
    from seqlab.train.evaluate import evaluate_corpus

    cfg, model, (src_tok, tgt_tok), dev = _load_for_inference(args.checkpoint, args.device)
    _nat_decoding(model, args, dev)
    cfg = config_from_dict(apply_overrides(cfg.to_dict(), args.overrides))
    task = load_task(cfg.task.name, cfg.task.options, Path(args.checkpoint).resolve().parent / "tokenizers")
    corpus = {"valid": task.valid, "test": task.test, "train": task.train}[args.split]
    scores, hyps = evaluate_corpus(model, corpus, src_tok, tgt_tok, task.metrics, cfg.decode, dev,
                                   beam_size=args.beam_size, show_progress=True)
    if args.output:
        Path(args.output).write_text("\n".join(hyps) + "\n", encoding="utf-8")
    print(json.dumps({"split": args.split, "beam_size": args.beam_size or cfg.decode.beam_size, **scores}))
    return 0


def cmd_translate(args: argparse.Namespace) -> int:
    from seqlab.data.vocab import EOS_ID
    from seqlab.train.evaluate import decode_ids

    cfg, model, (src_tok, tgt_tok), dev = _load_for_inference(args.checkpoint, args.device)
    _nat_decoding(model, args, dev)
    src = open(args.input, encoding="utf-8") if args.input else sys.stdin
    lines = [line.rstrip("\n") for line in src]
    ids = [src_tok.encode(line)[: cfg.decode.max_len - 1] + [EOS_ID] for line in lines]
    hyps = decode_ids(model, ids, cfg.decode, dev, beam_size=args.beam_size, batch_size=args.batch_size)
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    for h in hyps:
        out.write(tgt_tok.decode(h) + "\n")
    out.flush()
    return 0


def _add_nat_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--length-delta", type=int, default=None,
                   help="NAT: decode 2*delta+1 candidate lengths around the predicted one")
    p.add_argument("--rescorer", help="NAT: an autoregressive checkpoint that picks among the candidates")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqlab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model with any algorithm")
    p.add_argument("--config", help="YAML config (configs/*.yaml)")
    p.add_argument("--allow-short-schedules", action="store_true",
                   help="train even when an algorithm's schedule passes fewer than 3 stages within the budget")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("quickstart", help="G2P on CMUdict on the CPU in a few minutes")
    p.add_argument("overrides", nargs="*")
    p.set_defaults(func=cmd_quickstart)

    p = sub.add_parser("evaluate", help="score a checkpoint on a split of its task")
    p.add_argument("checkpoint")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--beam-size", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--output", help="write hypotheses here")
    p.add_argument("overrides", nargs="*", help="e.g. task.options.path=/data/multi30k")
    _add_nat_flags(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("translate", help="decode lines from stdin or a file")
    p.add_argument("checkpoint")
    p.add_argument("--input", "-i")
    p.add_argument("--output", "-o")
    p.add_argument("--beam-size", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--device", default="auto")
    _add_nat_flags(p)
    p.set_defaults(func=cmd_translate)

    for module, adder in (("seqlab.control.cli", "add_control_parser"), ("seqlab.nat.cli", "add_distill_parser"),
                          ("seqlab.compare.cli", "add_compare_parser")):
        try:
            mod = __import__(module, fromlist=[adder])
        except ModuleNotFoundError as e:  # that part of seqlab is not installed / not written
            if e.name and module.startswith(e.name):
                continue
            raise
        getattr(mod, adder)(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as e:
        from seqlab.config import ConfigError
        from seqlab.data.errors import DataError

        if isinstance(e, (DataError, ConfigError, FileNotFoundError)):  # the user's input: a message, no trace
            print(f"seqlab: error: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
