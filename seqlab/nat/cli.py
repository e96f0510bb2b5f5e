"""The NAT's command line: ``seqlab distill`` (sequence-level knowledge distillation of a task's training set with a
teacher) and the NAT decoding flags of ``seqlab evaluate`` / ``translate`` (``--length-delta``, ``--rescorer``).
The ``nat`` and ``dat`` models and algorithms register through :mod:`seqlab.registry` like every other component.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def cmd_distill(args: argparse.Namespace) -> int:
    from seqlab.nat.distill import distill

    report = distill(
        args.teacher,
        args.output,
        config=args.config,
        overrides=args.overrides,
        beam_size=args.beam_size,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        device=args.device,
        max_examples=args.max_examples,
        evaluate_teacher=not args.no_teacher_eval,
    )
    shown = {k: v for k, v in report.items() if k != "task_options"}
    print(json.dumps(shown, indent=2))
    print(
        f"distilled corpus in {args.output}; train on it with task.name=parallel "
        f'task.options="$(cat {args.output}/task.json)" after copying {args.output}/tokenizers into the '
        "run directory"
    )
    return 0


def add_distill_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "distill",
        help="decode the training set with a teacher (distilled corpus)",
        description="Sequence-level knowledge distillation: decode a task's training set "
        "with a teacher checkpoint into a corpus a student (e.g. a NAT) trains "
        "on. Resumable: rerun to continue.",
    )
    p.add_argument("--teacher", required=True, help="teacher checkpoint (e.g. runs/dat/checkpoint_best.pt)")
    p.add_argument("--output", "-o", required=True, help="output directory of the distilled corpus")
    p.add_argument("--config", help="YAML config whose task is distilled (default: the teacher's own)")
    p.add_argument("--beam-size", type=int, default=None, help="default: the config's decode.beam_size")
    p.add_argument("--batch-size", type=int, default=None, help="sentences per decoding batch")
    p.add_argument("--chunk-size", type=int, default=2000, help="examples per resumable chunk")
    p.add_argument("--max-examples", type=int, default=None, help="only the first N training examples")
    p.add_argument("--no-teacher-eval", action="store_true", help="skip scoring the teacher on valid / test")
    p.add_argument("--device", default="auto")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides of the config")
    p.set_defaults(func=cmd_distill)


def add_decoding_flags(p: argparse.ArgumentParser) -> None:
    """The NAT's flags of ``seqlab evaluate`` / ``translate``."""
    p.add_argument(
        "--length-delta",
        type=int,
        default=None,
        help="NAT: decode 2*delta+1 candidate lengths around the predicted one",
    )
    p.add_argument("--rescorer", help="NAT: an autoregressive checkpoint that picks among the candidates")


def apply_decoding_flags(model: Any, args: argparse.Namespace, device: Any) -> None:
    """Length-parallel decoding for NAT checkpoints: ``--length-delta`` candidates, rescored by ``--rescorer``."""
    if getattr(args, "length_delta", None) is None and getattr(args, "rescorer", None) is None:
        return
    if not hasattr(model, "set_rescorer"):
        from seqlab.config import ConfigError

        raise ConfigError("--length-delta / --rescorer apply to NAT checkpoints only")
    if args.length_delta is not None:
        model.cfg.length_delta = args.length_delta
    if args.rescorer:
        from seqlab.inference import load_checkpoint_model

        model.set_rescorer(load_checkpoint_model(args.rescorer, device).model)
