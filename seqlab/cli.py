"""Command line: ``seqlab train | evaluate | translate | quickstart | list | distill | compare | control``.

Only argparse is imported at start-up (``--help`` answers at once); each command imports what it needs, and
the parsers of ``distill`` / ``compare`` / ``control`` are built only when that command is asked for.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqlab.registry import Registry, load_named_plugins

DESCRIPTION = """\
seqlab trains sequence-prediction models with the algorithms between maximum likelihood and reinforcement
learning (MLE, RAML, policy gradient, MIXER, ERPO, actor-critic, ...) from one engine.

Start with `seqlab quickstart` (a G2P model on the CPU in a few minutes), then
`seqlab train --config configs/g2p_transformer.yaml`; `seqlab list algorithms` shows what is available."""

TRAIN_EPILOG = """\
overrides: section.key=value after the options, e.g. train.lr=0.001 algorithm.name=raml
  algorithm.options.tau=0.4 task.options.max_train=5000 (sections: run_dir, task, model, algorithm, train,
  decode; values are YAML: numbers, true/false, null, [lists], {{mappings}}).

tasks:         {tasks}
algorithms:    {algorithms}
architectures: {models}
(one line on each: seqlab list tasks | algorithms | models | rewards; an algorithm's options:
seqlab train --help-algorithm NAME)"""

#: the built-in names shown by ``seqlab train --help`` without importing the registries (tests/test_cli.py keeps
#: them equal to the registries)
TASK_NAMES = ("aeslc", "captioning", "g2p-cmudict", "hf", "multi30k", "parallel", "sigmorphon-g2p", "summarization")
ALGORITHM_NAMES = (
    "ac",
    "alpha_dimt",
    "dat",
    "erac",
    "erpo",
    "imitate_nat",
    "interpolation",
    "mixer",
    "mixer_anneal",
    "mle",
    "nat",
    "noising",
    "pg",
    "raml",
    "scheduled_sampling",
    "spg",
    "vaml",
)
MODEL_NAMES = ("dat", "hf_seq2seq", "lstm", "nat", "nic", "transformer")
LIST_KINDS = ("tasks", "algorithms", "models", "rewards")


@dataclass(frozen=True)
class Command:
    """A sub-command whose parser lives in another module (``module.adder(subparsers)``), built only when it is
    named on the command line; ``summary`` is its line in ``seqlab --help``."""

    module: str
    adder: str
    summary: str


#: the sub-commands of other modules, in the one registry of seqlab.registry: a plugin adds its own with
#: :func:`register_command` (reading it imports the plugin modules only, so ``seqlab --help`` imports no torch)
COMMANDS: Registry[Command] = Registry("command", "sub-command", loader=load_named_plugins)


def register_command(name: str, module: str, adder: str, summary: str) -> Command:
    """Register the sub-command ``name``: ``seqlab name ...`` builds its parser with ``module.adder(subparsers)``."""
    return COMMANDS.add(name, Command(module, adder, summary))


register_command(
    "distill",
    "seqlab.nat.cli",
    "add_distill_parser",
    "decode a training set with a teacher (sequence-level knowledge distillation)",
)
register_command(
    "compare",
    "seqlab.compare.cli",
    "add_compare_parser",
    "algorithms x seeds on one task from one MLE checkpoint, the same budget each; a report",
)
register_command(
    "control",
    "seqlab.control.cli",
    "add_control_parser",
    "imitation learning on MuJoCo: expert, demos, GAIL (+ interpolation)",
)
register_command(
    "export",
    "seqlab.hf.cli",
    "add_export_parser",
    "write an hf_seq2seq checkpoint as a Hugging Face model folder (safetensors, tokenizer, card)",
)

#: modules with decoding flags of evaluate / translate for their model family: ``add_decoding_flags(parser)`` and
#: ``apply_decoding_flags(model, args, device)``
DECODING_FLAG_MODULES = ("seqlab.nat.cli",)

QUICKSTART_RUN_DIR = "runs/quickstart"
#: the quickstart's step budget: test WER <= 45 % on CMUdict, about 5 minutes on 2 idle cores (README)
QUICKSTART_STEPS = 1200
#: the wall-clock cap on its training, in minutes: a slower machine trains the same model, later, up to this
QUICKSTART_MAX_MINUTES = 30.0
#: above this test WER (%) the closing line calls the model undertrained
QUICKSTART_UNDERTRAINED_WER = 50.0

QUICKSTART_OVERRIDES = [
    f"run_dir={QUICKSTART_RUN_DIR}",
    "task.name=g2p-cmudict",
    "task.options.valid_percent=1.0",  # test (5 %) unchanged; a small valid split keeps evaluation short
    "model.arch=transformer",
    "model.options={d_model: 128, n_heads: 4, ffn_dim: 512, encoder_layers: 2, decoder_layers: 2, dropout: 0.0}",
    "train.device=cpu",
    "train.max_tokens=2000",
    "train.lr=0.003",
    "train.scheduler=linear",  # decays to 0 at the step budget: the best model a fixed budget buys
    "train.warmup_steps=150",
    "train.max_epochs=100",
    "train.eval_every_steps=600",
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


def _checked_config(path: str | None, overrides: list[str]) -> Any:
    """The config, with every check that needs no data (names, option keys, values): before anything is loaded
    or written."""
    from seqlab.catalog import check_config
    from seqlab.config import load_config

    cfg = load_config(path, overrides)
    check_config(cfg)
    return cfg


def cmd_train(args: argparse.Namespace) -> int:
    if args.help_algorithm:
        from seqlab.catalog import algorithm_help

        print(algorithm_help(args.help_algorithm))
        return 0
    from seqlab.train.trainer import train

    overrides = list(args.overrides)
    if args.allow_short_schedules:
        overrides.append("train.allow_short_schedules=true")
    cfg = _checked_config(args.config, overrides)
    results = train(cfg)
    if results.get("already_finished"):
        print(results["already_finished"])
        return 0
    if results.get("test"):
        _print_table(f"{cfg.algorithm.name} on {cfg.task.name} ({cfg.run_dir})", results)
    graphs = results.get("cuda_graphs")
    if graphs:  # train.cuda_graphs: whether the steps were replayed, or it fell back to eager steps (it warned why)
        how = "" if graphs["capturing"] else " (not capturing: see the warning above)"
        print(f"train.cuda_graphs: {graphs['captures']} buckets captured, {graphs['replays']} steps replayed{how}")
    return 0


def quickstart_verdict(results: dict[str, Any], steps: int) -> str:
    """The quickstart's closing line: whether the model learned, and what to run when it did not."""
    wer, done = results["test"]["wer"], int(results.get("budget_steps", results.get("steps", 0)))
    if results.get("cut_short_by_max_minutes") or wer > QUICKSTART_UNDERTRAINED_WER:
        more = max(2 * done, QUICKSTART_STEPS)
        cap = " --max-minutes 60" if results.get("cut_short_by_max_minutes") else ""
        return (
            f"undertrained: {done} steps, test WER {wer:.1f} %; run `seqlab quickstart --steps {more}{cap}` "
            f"(it continues this run)"
        )
    return (
        f"learned: {done} steps, test WER {wer:.1f} % (every phoneme right in {100 - wer:.0f} % of unseen "
        f"words); more steps lower it: `seqlab quickstart --steps {2 * done}` continues this run"
    )


def quickstart_threads() -> tuple[int, int, float]:
    """(threads, cores, load average): one intra-op thread per core the machine's load leaves idle, at least one.
    On a busy machine threads that wait for each other are several times slower than one (a 2-core machine at load
    average 8-11: 200 target tokens/s with 2 threads, 900-1,800 with 1; README)."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(cores, round(cores - load))), cores, load


def cmd_quickstart(args: argparse.Namespace) -> int:
    import torch

    from seqlab.train.trainer import train

    budget = [f"train.max_steps={args.steps}", f"train.max_minutes={args.max_minutes}"]
    cfg = _checked_config(None, QUICKSTART_OVERRIDES + budget + list(args.overrides))
    steps = cfg.train.max_steps or args.steps
    cap = f" (at most {cfg.train.max_minutes:g} min of training)" if cfg.train.max_minutes else ""
    threads, cores, load = quickstart_threads()
    print(
        f"seqlab quickstart: Transformer G2P on CMUdict, CPU ({threads} of {cores} cores at load average "
        f"{load:.1f}), {steps} steps{cap} -> {cfg.run_dir}"
    )
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        results = train(cfg)
    finally:
        torch.set_num_threads(previous)
    if results.get("already_finished"):
        from seqlab.train.runstate import finished_run

        done = finished_run(cfg)
        hint = (
            f"run `seqlab quickstart --steps {2 * steps}`"
            if done is None or done.reason != "train.max_minutes"
            else f"run `seqlab quickstart --max-minutes {2 * cfg.train.max_minutes:g}`"
        )
        print(done.message(hint) if done is not None else results["already_finished"])
        return 0
    _print_table("seqlab quickstart: grapheme-to-phoneme (CMUdict)", results)
    print(quickstart_verdict(results, steps))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from seqlab.catalog import listing

    rows = listing(args.kind)
    width = max(len(name) for name, _ in rows)
    for name, line in rows:
        print(f"{name:{width}s}  {line}")
    return 0


def _load_for_inference(checkpoint: str, device: str) -> tuple[Any, Any, Any, Any]:
    from seqlab.inference import load_checkpoint_model

    loaded = load_checkpoint_model(checkpoint, device)
    return loaded.config, loaded.model, (loaded.src_tokenizer, loaded.tgt_tokenizer), loaded.device


def _decoding_flag_modules() -> list[Any]:
    import importlib

    return [importlib.import_module(name) for name in DECODING_FLAG_MODULES]


def _apply_decoding_flags(model: Any, args: argparse.Namespace, device: Any) -> None:
    """The model family's own decoding flags of evaluate / translate (e.g. the NAT's ``--length-delta``)."""
    for module in _decoding_flag_modules():
        module.apply_decoding_flags(model, args, device)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from seqlab.config import apply_overrides, config_from_dict
    from seqlab.data.tasks import load_task
    from seqlab.train.evaluate import evaluate_corpus

    cfg, model, (src_tok, tgt_tok), dev = _load_for_inference(args.checkpoint, args.device)
    _apply_decoding_flags(model, args, dev)
    origins: dict[str, str] = {}
    cfg = config_from_dict(
        apply_overrides(cfg.to_dict(), args.overrides, origins), origins, f"the config of {args.checkpoint}"
    )
    task = load_task(cfg.task.name, cfg.task.options, Path(args.checkpoint).resolve().parent / "tokenizers")
    corpus = {"valid": task.valid, "test": task.test, "train": task.train}[args.split]
    scores, hyps = evaluate_corpus(
        model, corpus, src_tok, tgt_tok, task.metrics, cfg.decode, dev, beam_size=args.beam_size, show_progress=True
    )
    if args.output:
        Path(args.output).write_text("\n".join(hyps) + "\n", encoding="utf-8")
    from seqlab.metrics.signature import sacrebleu_signatures

    signatures = sacrebleu_signatures(task.metrics, corpus.references()[1])
    print(
        json.dumps(
            {
                "split": args.split,
                "beam_size": args.beam_size or cfg.decode.beam_size,
                **scores,
                **({"signatures": signatures} if signatures else {}),
            }
        )
    )
    return 0


def cmd_translate(args: argparse.Namespace) -> int:
    from seqlab.data.errors import DataError
    from seqlab.train.evaluate import decode_ids, encode_lines

    if args.input and not Path(args.input).is_file():
        raise DataError("input file not found", args.input)
    cfg, model, (src_tok, tgt_tok), dev = _load_for_inference(args.checkpoint, args.device)
    _apply_decoding_flags(model, args, dev)
    src = open(args.input, encoding="utf-8") if args.input else sys.stdin
    lines = [line.rstrip("\n") for line in src]
    ids = encode_lines(src_tok, lines, cfg.decode.max_len)
    decode = dataclasses.replace(cfg.decode, compile=cfg.decode.compile or args.compile)
    hyps = decode_ids(model, ids, decode, dev, beam_size=args.beam_size, batch_size=args.batch_size)
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    for h in hyps:
        out.write(tgt_tok.decode(h) + "\n")
    out.flush()
    return 0


def _add_decoding_flags(p: argparse.ArgumentParser, command: str | None, name: str) -> None:
    """The model families' decoding flags (imported only when ``name`` is the command, or for the full parser)."""
    if command is None or command == name:
        for module in _decoding_flag_modules():
            module.add_decoding_flags(p)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; ``command`` (the sub-command on the command line, if known) decides which lazily built
    sub-command parsers are built in full (all of them when None)."""
    parser = argparse.ArgumentParser(
        prog="seqlab", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--plugin",
        action="append",
        metavar="MODULE",
        help="import MODULE first: a module that registers algorithms, models, tasks or rewards "
        "(repeatable; anywhere on the command line; also $SEQLAB_PLUGINS, comma-separated, and "
        "the seqlab.plugins entry-point group)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    checkpoint_help = "a checkpoint written by seqlab train (e.g. runs/NAME/checkpoint_best.pt)"

    p = sub.add_parser(
        "train",
        help="train a model with any algorithm (resumes its run_dir)",
        description="Train a model: a YAML config plus section.key=value overrides. Rerunning the "
        "same command resumes the run; Ctrl-C saves a checkpoint first.",
        epilog=TRAIN_EPILOG.format(
            tasks=", ".join(TASK_NAMES), algorithms=", ".join(ALGORITHM_NAMES), models=", ".join(MODEL_NAMES)
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="YAML config (e.g. configs/g2p_transformer.yaml); without it, the defaults")
    p.add_argument(
        "--allow-short-schedules",
        action="store_true",
        help="train even when an algorithm's schedule passes fewer than 3 stages within the budget",
    )
    p.add_argument("--help-algorithm", metavar="NAME", help="print an algorithm's options and defaults, then exit")
    p.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides (see below)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "quickstart",
        help="train a G2P model on CMUdict on the CPU in a few minutes",
        description="Train a small Transformer from spelling to pronunciation (CMUdict) on the "
        "CPU and score it. Rerun to continue; --steps raises the budget.",
    )
    p.add_argument(
        "--steps",
        type=_positive_int,
        default=QUICKSTART_STEPS,
        help=f"training steps (default {QUICKSTART_STEPS}); a rerun with more continues the run",
    )
    p.add_argument(
        "--max-minutes",
        type=_positive_float,
        default=QUICKSTART_MAX_MINUTES,
        help=f"wall-clock cap on training in minutes (default {QUICKSTART_MAX_MINUTES:g}); a warning "
        "says when it cuts the run short",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="section.key=value",
        help=f"config overrides, e.g. run_dir=runs/qs2 (default run_dir {QUICKSTART_RUN_DIR})",
    )
    p.set_defaults(func=cmd_quickstart)

    p = sub.add_parser("evaluate", help="score a checkpoint on a split of its task")
    p.add_argument("checkpoint", help=checkpoint_help)
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--beam-size", type=_positive_int, default=None, help="default: the run's decode.beam_size")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--output", help="write hypotheses here")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="section.key=value",
        help="overrides of the run's config, e.g. task.options.path=/data/multi30k",
    )
    _add_decoding_flags(p, command, "evaluate")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("translate", help="decode lines from stdin or a file")
    p.add_argument("checkpoint", help=checkpoint_help)
    p.add_argument("--input", "-i", help="one source per line (default: stdin)")
    p.add_argument("--output", "-o", help="default: stdout")
    p.add_argument("--beam-size", type=_positive_int, default=None, help="default: the run's decode.beam_size")
    p.add_argument("--batch-size", type=_positive_int, default=None, help="sentences per decoding batch")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument(
        "--compile",
        action="store_true",
        help="compile the decoder step (a GPU: faster steps; the first sentence waits for the compilation)",
    )
    _add_decoding_flags(p, command, "translate")
    p.set_defaults(func=cmd_translate)

    p = sub.add_parser("list", help="list the tasks, algorithms, models or rewards, one line each")
    p.add_argument("kind", choices=LIST_KINDS, help="what to list")
    p.set_defaults(func=cmd_list)

    for name in COMMANDS:
        spec = COMMANDS[name]
        if command is None or command == name:
            try:
                mod = importlib.import_module(spec.module)
            except ModuleNotFoundError as e:  # that part of seqlab (or its extra) is not installed
                if e.name and spec.module.startswith(e.name):
                    continue
                raise
            getattr(mod, spec.adder)(sub)
        else:  # named in `seqlab --help`; its full parser is built when the command is used
            sub.add_parser(name, help=spec.summary, add_help=False)
    return parser


def _command(argv: list[str]) -> str:
    """The sub-command named in ``argv`` ("" when none: top-level help or an error)."""
    return next((a for a in argv if not a.startswith("-")), "")


def _user_error(e: BaseException) -> bool:
    """Errors in the user's input, reported as one line: config, data, checkpoints, missing files."""
    from seqlab.config import ConfigError
    from seqlab.data.errors import DataError

    kinds: tuple[type, ...] = (ConfigError, DataError, FileNotFoundError)
    if "seqlab.train.checkpoint" in sys.modules:
        kinds += (sys.modules["seqlab.train.checkpoint"].CheckpointError,)
    return isinstance(e, kinds)


def split_plugins(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the modules of every ``--plugin MODULE`` / ``--plugin=MODULE`` anywhere in ``argv``, the other arguments)."""
    plugins, rest, i = [], [], 0
    while i < len(argv):
        if argv[i] == "--plugin" and i + 1 < len(argv):
            plugins.append(argv[i + 1])
            i += 2
            continue
        if argv[i].startswith("--plugin="):
            plugins.append(argv[i].split("=", 1)[1])
        else:
            rest.append(argv[i])
        i += 1
    return plugins, rest


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    plugins, argv = split_plugins(argv)
    if plugins:  # named in $SEQLAB_PLUGINS: imported on the first registry lookup, here and in subprocesses
        from seqlab.registry import name_plugins

        name_plugins(plugins)
    try:  # building the parser reads the commands' registry, which imports the plugins
        args = build_parser(_command(argv)).parse_args(argv)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:  # before training started, or a second Ctrl-C
        print("seqlab: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        from seqlab.train.runstate import INTERRUPTED_EXIT, TrainingInterrupted

        if isinstance(e, TrainingInterrupted):
            print(f"seqlab: {e}", file=sys.stderr)
            return INTERRUPTED_EXIT
        if _user_error(e):
            message = " ".join(str(e).split()) if str(e) else type(e).__name__
            print(f"seqlab: error: {message}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":  # run as seqlab.cli (not __main__), so that plugins register into this module's registry
    from seqlab.cli import main as _main

    sys.exit(_main())
