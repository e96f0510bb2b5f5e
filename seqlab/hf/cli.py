"""``seqlab export CKPT --hf OUT`` (built lazily by :mod:`seqlab.cli`; nothing heavy is imported here)."""

from __future__ import annotations

import argparse


def cmd_export(args: argparse.Namespace) -> int:
    from seqlab.hf import require_transformers
    from seqlab.hf.export import export_hf

    require_transformers()
    out = export_hf(args.checkpoint, args.hf, device=args.device)
    print(f"exported {args.checkpoint} to {out} (safetensors, tokenizer, README.md model card)")
    return 0


def add_export_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="write an hf_seq2seq checkpoint as a Hugging Face model folder",
        description="Write a checkpoint of an hf_seq2seq run as a Hugging Face model folder: "
        "save_pretrained safetensors in the model's own ids, its tokenizer, a "
        "generation config and a model card (needs seqlab[hf]).",
    )
    p.add_argument("checkpoint", help="a checkpoint written by seqlab train (e.g. runs/NAME/checkpoint_best.pt)")
    p.add_argument("--hf", required=True, metavar="OUT", help="the folder to write (created)")
    p.add_argument("--device", default="cpu", help="where the checkpoint is loaded (default cpu)")
    p.set_defaults(func=cmd_export)
