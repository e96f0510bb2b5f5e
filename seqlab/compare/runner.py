"""Run algorithms x seeds on one task from one shared MLE checkpoint, with the same budget each.

Layout of a comparison directory ``DIR``::

    DIR/compare.json          the plan: base config, budget, algorithms, seeds (checked on every rerun)
    DIR/task.yaml             the resolved task config every run starts from
    DIR/pretrain/             the shared MLE checkpoint (step 1; resumable, trained once)
    DIR/runs/<algo>/seed<k>/  one ``seqlab train`` run per (algorithm, seed) (step 2)
    DIR/test.refs.json        the test references (for paired bootstrap in the report)
    DIR/report/               report.md, report.html and the PNG figures (step 3)

Every run is a subprocess ``python -m seqlab.compare train --config DIR/task.yaml ...`` (``seqlab train``; it
inherits ``$SEQLAB_PLUGINS``, so plugins named by ``seqlab --plugin`` register there too); a run whose
``results.json`` exists is skipped, an interrupted one resumes from its ``checkpoint_last.pt``.  The runs go
through :func:`seqlab.launch.run_jobs`, the benchmarks' scheduler too: with GPUs it keeps ``runs_per_gpu`` runs
(default one) on each GPU (``CUDA_VISIBLE_DEVICES``, and their share of its memory); without GPUs, runs go in
sequence.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from seqlab import launch
from seqlab.compare.layout import EXTRA_DIR, START_DIR, parse_extra_test  # noqa: F401  (seqlab.compare.cli)
from seqlab.config import (
    Config,
    ConfigError,
    DecodeConfig,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    load_config,
    save_config,
)

#: a huge epoch limit: with a step / minute budget the budget alone decides when a run ends
UNLIMITED_EPOCHS = 1_000_000


@dataclass
class Variant:
    """One entry of the comparison: a label, the registered algorithm it runs, and its overrides."""

    label: str
    algorithm: str
    overrides: list[str] = field(default_factory=list)


@dataclass
class CompareSpec:
    """Everything that defines a comparison (what ``compare.json`` records)."""

    config: str  # the task YAML
    out: str
    algorithms: list[str]
    seeds: list[int]
    pretrain_steps: int = 0  # 0: no shared pre-training (every run starts from scratch)
    budget_steps: int | None = None
    budget_minutes: float | None = None
    init_from: str | None = None  # use this existing MLE checkpoint instead of pre-training
    overrides: list[str] = field(default_factory=list)  # applied to every run (and the pre-training)
    pretrain_overrides: list[str] = field(default_factory=list)  # only the pre-training
    algorithm_overrides: dict[str, list[str]] = field(default_factory=dict)  # per label
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)  # label -> {algorithm, overrides}
    baseline: str = "mle"
    gpus: str = "auto"  # auto | none | "0,1"
    runs_per_gpu: int = 1  # concurrent runs on each GPU (small, launch-bound models share a GPU well)
    gpu_memory_share: float = 0.95  # of each GPU's memory, for all of this comparison's runs on it together
    reward: str | None = None  # algorithm.options.reward of every reward-based algorithm (e.g. rouge)
    # what every run continues from the shared checkpoint: "full" (its optimizer moments and lr schedule, with the
    # pre-training's optimizer / schedule settings) or "model" (weights only, each run's own schedule)
    init_state: str = "full"
    label_smoothing: float | None = None  # of every run (None: the task config's train.label_smoothing)
    allow_short_schedules: bool = False  # let runs whose schedules pass < 3 stages in the budget train anyway
    extra_tests: dict[str, list[str]] = field(default_factory=dict)  # NAME -> [SRC, REF]: more test sets
    # the algorithms with a critic-only phase (ac, erac, vaml) run it once per label, in a run of its own, and every
    # seed's run starts from that critic (the authors pre-train the critic once); False: every run pre-trains its own
    share_critic: bool = False
    # labels whose runs (every seed, in this order) are queued before the rest: the longest runs first, so the
    # comparison's last runs are short ones and its GPUs stay busy to the end; the results do not depend on it
    queue_first: list[str] = field(default_factory=list)

    def variant(self, label: str) -> Variant:
        spec = self.variants.get(label, {})
        algorithm = spec.get("algorithm", label)
        extra = list(spec.get("overrides", [])) + list(self.algorithm_overrides.get(label, []))
        if self.reward and uses_reward(algorithm):
            extra.insert(0, f"algorithm.options.reward={self.reward}")
        return Variant(label, algorithm, extra)

    def resolved_label_smoothing(self) -> float:
        """The one label smoothing of every run: ``label_smoothing``, else the task config's."""
        if self.label_smoothing is not None:
            return float(self.label_smoothing)
        return float(load_config(self.config, self.overrides).train.label_smoothing)

    def fingerprint(self) -> dict[str, Any]:
        """The settings every run shares; a rerun into the same directory must not change them."""
        data = {
            "config": _config_text(self.config, self.overrides),
            "init_state": self.init_state,
            "label_smoothing": self.resolved_label_smoothing(),
            "pretrain_steps": self.pretrain_steps,
            "budget_steps": self.budget_steps,
            "budget_minutes": self.budget_minutes,
            "init_from": self.init_from,
            "pretrain_overrides": self.pretrain_overrides,
            "reward": self.reward,
            "share_critic": self.share_critic,
        }
        return json.loads(json.dumps(data))  # as compare.json stores it (tuples become lists)


def algorithm_options(algorithm: str) -> set[str]:
    """The option names a registered algorithm accepts (the fields of its options dataclass)."""
    from seqlab.algorithms.base import ALGORITHMS

    return set(ALGORITHMS.option_names(algorithm) or ())


def uses_reward(algorithm: str) -> bool:
    """Whether a registered algorithm takes a ``reward`` option."""
    return "reward" in algorithm_options(algorithm)


def _config_text(path: str, overrides: list[str]) -> dict[str, Any]:
    cfg = load_config(path, overrides)
    data = cfg.to_dict()
    data.pop("run_dir", None)
    return data


def split_overrides(items: Sequence[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Split ``key=value`` (every run) from ``label:key=value`` (one algorithm label's runs)."""
    common: list[str] = []
    per: dict[str, list[str]] = {}
    for item in items:
        key = item.split("=", 1)[0]
        if ":" in key:
            label, rest = item.split(":", 1)
            per.setdefault(label.strip(), []).append(rest)
        else:
            common.append(item)
    return common, per


def load_compare_yaml(path: str | Path) -> dict[str, Any]:
    """Read a compare YAML: any CompareSpec field (``algorithms``, ``seeds``, ``budget_steps``,
    ``algorithm_overrides``, ``variants``, ...) plus ``algorithm_options: {label: {option: value}}``."""
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    known = set(CompareSpec.__dataclass_fields__) | {"algorithm_options", "export"}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    data.pop("export", None)  # where --export-results writes (seqlab.compare.export)
    options = data.pop("algorithm_options", None) or {}
    per = {k: list(v) for k, v in (data.get("algorithm_overrides") or {}).items()}
    for label, opts in options.items():
        per.setdefault(label, []).extend(f"algorithm.options.{k}={json.dumps(v)}" for k, v in opts.items())
    data["algorithm_overrides"] = per
    return data


# ---------------------------------------------------------------------------------------------- runs
@dataclass
class Run:
    """One subprocess: a training run (``overrides`` of the task config), or the scoring of a checkpoint on test
    sets (``kind="score"``: ``args`` of :mod:`seqlab.compare.score`, done once every name in ``sets`` is scored)."""

    name: str
    run_dir: Path
    overrides: list[str]
    kind: str = "train"  # train | score
    args: list[str] = field(default_factory=list)
    sets: list[str] = field(default_factory=list)
    #: the files of a finished training run (a shared critic's run also needs its checkpoint: the seeds load it,
    #: and a comparison folder carried between machines keeps the results but not the checkpoints)
    finished_files: tuple[str, ...] = ("results.json",)

    @property
    def done(self) -> bool:
        if self.kind == "score":
            from seqlab.compare.score import read_scores

            return set(self.sets) <= set(read_scores(self.run_dir))
        return all((self.run_dir / name).exists() for name in self.finished_files)

    @property
    def label(self) -> str:
        """The algorithm label of a ``label/seed<k>`` (or ``label/critic``) run."""
        return self.name.rsplit("/", 1)[0]

    @property
    def log_name(self) -> str:
        return "score.out" if self.kind == "score" else "train.out"


def run_dir_for(out: Path, label: str, seed: int) -> Path:
    return out / "runs" / label / f"seed{seed}"


def pretrain_checkpoint(out: Path) -> Path:
    return out / "pretrain" / "checkpoint_best.pt"


def _budget_overrides(spec: CompareSpec) -> list[str]:
    """The budget, and nothing else, ends a run: no early stopping, no epoch limit below it."""
    out = ["train.patience=null"]
    if spec.budget_steps is not None:
        out.append(f"train.max_steps={spec.budget_steps}")
    if spec.budget_minutes is not None:
        out.append(f"train.max_minutes={spec.budget_minutes}")
    if len(out) > 1:
        out.append(f"train.max_epochs={UNLIMITED_EPOCHS}")
    return out


#: every run is a non-interactive subprocess: no progress bar in its train.out
COMMON_OVERRIDES = ["train.progress_bar=false"]


def plan_pretrain(spec: CompareSpec, out: Path) -> Run | None:
    """The shared MLE pre-training run (None without pre-training or with ``init_from``)."""
    if spec.init_from or spec.pretrain_steps <= 0:
        return None
    overrides = [
        *COMMON_OVERRIDES,
        f"run_dir={out / 'pretrain'}",
        "algorithm.name=mle",
        "algorithm.options={}",
        f"train.max_steps={spec.pretrain_steps}",
        f"train.max_epochs={UNLIMITED_EPOCHS}",
        "train.max_minutes=null",
        "train.init_from=null",
        *spec.pretrain_overrides,
    ]
    return Run("pretrain", out / "pretrain", overrides)


def start_checkpoint(spec: CompareSpec, out: Path) -> str | None:
    """The checkpoint every run starts from: ``--init-from``, the pre-training's best, or None (from scratch)."""
    return spec.init_from or (str(pretrain_checkpoint(out)) if spec.pretrain_steps > 0 else None)


#: the optimizer and lr schedule settings a run takes from the shared checkpoint's run under init_state=full
CONTINUED_SETTINGS = ("optimizer", "lr", "betas", "weight_decay", "scheduler", "warmup_steps")
INIT_STATES = ("full", "model")


def start_settings(spec: CompareSpec, out: Path) -> dict[str, Any]:
    """The optimizer / lr schedule settings of the run that wrote the shared checkpoint: the pre-training's
    (task config, common and ``pretrain:`` overrides) or those stored in ``--init-from``'s checkpoint."""
    if spec.init_from:
        from seqlab.train import checkpoint as ckpt

        if not Path(spec.init_from).exists():
            return {}
        train = (ckpt.load(spec.init_from).get("config") or {}).get("train", {})
    else:
        pre = plan_pretrain(spec, out)
        if pre is None:
            return {}
        train = asdict(load_config(spec.config, [*spec.overrides, *pre.overrides]).train)
    return {k: list(train[k]) if isinstance(train[k], tuple) else train[k] for k in CONTINUED_SETTINGS if k in train}


def _start_overrides(spec: CompareSpec, out: Path) -> list[str]:
    """``init_state=full``: continue the shared run's optimizer and lr schedule, with its settings."""
    if spec.init_state not in INIT_STATES:
        raise ConfigError(f"init_state must be one of {INIT_STATES}, got {spec.init_state!r}")
    if start_checkpoint(spec, out) is None:
        return []
    settings = start_settings(spec, out) if spec.init_state == "full" else {}
    return [f"train.init_state={spec.init_state}", *(f"train.{k}={json.dumps(v)}" for k, v in settings.items())]


def plan_runs(spec: CompareSpec, out: Path) -> list[Run]:
    """Every (algorithm, seed) run, seeds outermost so that an interrupted comparison is balanced.  Every run
    has the one label smoothing (set last; a per-algorithm value is refused)."""
    init = start_checkpoint(spec, out)
    start = _start_overrides(spec, out)
    smoothing = spec.resolved_label_smoothing()
    runs = []
    for seed in spec.seeds:
        for label in spec.algorithms:
            v = spec.variant(label)
            if any(o.split("=", 1)[0].strip() == "train.label_smoothing" for o in v.overrides):
                raise ConfigError(
                    f"{label}: train.label_smoothing is one value for every run of a comparison "
                    "(--label-smoothing), not per algorithm"
                )
            rd = run_dir_for(out, label, seed)
            overrides = [
                *COMMON_OVERRIDES,
                f"run_dir={rd}",
                f"train.seed={seed}",
                f"algorithm.name={v.algorithm}",
                "algorithm.options={}",
                f"train.init_from={json.dumps(init) if init else 'null'}",
                *_budget_overrides(spec),
                *start,
                *v.overrides,
                f"train.label_smoothing={smoothing}",
                *(["train.allow_short_schedules=true"] if spec.allow_short_schedules else []),
            ]
            runs.append(Run(f"{label}/seed{seed}", rd, overrides))
    return queued_first([_from_shared_critic(run, spec, out) for run in runs], spec)


def critic_phase(spec: CompareSpec, label: str) -> str | None:
    """The option of ``label``'s critic-only phase when ``share_critic`` shares it (None: not shared)."""
    if not spec.share_critic:
        return None
    from seqlab.algorithms.base import ALGORITHMS

    return getattr(ALGORITHMS.entry(spec.variant(label).algorithm).obj, "critic_phase_option", None)


def critic_run_dir(out: Path, label: str) -> Path:
    return out / "critics" / label


def _from_shared_critic(run: Run, spec: CompareSpec, out: Path) -> Run:
    """A seed's run that starts from its label's shared critic and skips the critic-only phase."""
    phase = critic_phase(spec, run.label)
    if phase is None:
        return run
    critic = critic_run_dir(out, run.label) / "checkpoint_last.pt"
    extra = [f"algorithm.options.critic_from={json.dumps(str(critic))}", f"algorithm.options.{phase}=0"]
    return replace(run, overrides=[*run.overrides, *extra])


def plan_critics(spec: CompareSpec, out: Path) -> list[Run]:
    """``share_critic``: per label with a critic-only phase and a seed still to run, one run of that phase (the
    first seed's settings), ended by one joint step; its checkpoint_last.pt holds the critic the seeds start
    from."""
    critics = []
    unshared = {run.name: run for run in plan_runs(replace(spec, share_critic=False), out)}
    for label in spec.algorithms:
        if critic_phase(spec, label) is None:
            continue
        if all(unshared[f"{label}/seed{seed}"].done for seed in spec.seeds):
            continue  # every seed finished: no critic to train again (a carried folder has no checkpoints)
        run, rd = unshared[f"{label}/seed{spec.seeds[0]}"], critic_run_dir(out, label)
        overrides = [o for o in run.overrides if not o.startswith(("run_dir=", "train.max_steps="))]
        # no validation decode during the phase (the actor is fixed); one joint step ends the run
        overrides += [f"run_dir={rd}", "train.max_steps=1", f"train.eval_every_steps={10**9}", "decode.beam_size=1"]
        critics.append(Run(f"{label}/critic", rd, overrides, finished_files=("results.json", "checkpoint_last.pt")))
    return critics


def queued_first(runs: list[Run], spec: CompareSpec) -> list[Run]:
    """``runs`` with those of ``spec.queue_first``'s labels moved to the front: label by label in that order,
    seeds outermost within each; the rest keep their order."""
    unknown = [label for label in spec.queue_first if label not in spec.algorithms]
    if unknown:
        raise ConfigError(f"queue_first names {unknown}, which are not in the comparison's algorithms")
    first = [run for label in spec.queue_first for run in runs if run.label == label]
    return first + [run for run in runs if run.label not in spec.queue_first]


# ---------------------------------------------------------------------------------------------- schedules
def _declares_schedules(algorithm: str) -> bool:
    from seqlab.algorithms.base import ALGORITHMS, Algorithm

    cls = ALGORITHMS.get(algorithm)
    return cls is not None and cls.schedules is not Algorithm.schedules


def check_schedules(
    config: str, runs: Sequence[Run], tokenizers: Path, echo: Callable[[str], None] = print
) -> dict[str, dict[str, int]]:
    """Before any run trains: the stages each scheduled algorithm's schedules pass within its budget (as the
    trainer counts them, with the steps per epoch of the run's batches), refusing fewer than 3 with the
    trainer's one-line error unless the run allows short schedules.  Runs of one label and batch settings are
    checked once.  A run whose algorithm cannot be built here is left to check itself when it starts."""
    import numpy as np
    import torch

    from seqlab.algorithms.base import AlgorithmContext, build_algorithm
    from seqlab.data.batching import TokenBatchSampler, encode_corpus
    from seqlab.erpo.budget import check_schedule_budget
    from seqlab.models import build_model
    from seqlab.tasks import load_task

    stages: dict[str, dict[str, int]] = {}
    seen: set[str] = set()
    task, encoded = None, {}
    for run in runs:
        cfg = load_config(config, run.overrides)
        if run.kind != "train" or not _declares_schedules(cfg.algorithm.name):
            continue
        tc = cfg.train
        key = json.dumps(
            [
                cfg.algorithm.name,
                cfg.algorithm.options,
                tc.max_tokens,
                tc.max_sentences,
                tc.max_len,
                tc.max_steps,
                tc.max_epochs,
                tc.allow_short_schedules,
            ],
            sort_keys=True,
            default=str,
        )
        if key in seen:
            continue
        seen.add(key)
        task = task or load_task(cfg.task.name, cfg.task.options, tokenizers)
        if tc.max_len not in encoded:
            encoded[tc.max_len] = encode_corpus(task.train, task.src_tokenizer, task.tgt_tokenizer, max_len=tc.max_len)
        data = encoded[tc.max_len]
        per_epoch = len(
            TokenBatchSampler(
                data.lengths(), max_tokens=tc.max_tokens, max_sentences=tc.max_sentences, shuffle=True, seed=tc.seed
            )
        )
        total = min(tc.max_steps, tc.max_epochs * per_epoch) if tc.max_steps else tc.max_epochs * per_epoch
        if tc.max_minutes and not tc.max_steps:
            continue  # a time budget: the number of steps is not known before training
        try:
            vocab = (task.src_tokenizer.vocab_size, task.tgt_tokenizer.vocab_size)
            counts = np.bincount(np.asarray(data.tgt.data), minlength=vocab[1]).astype(np.float64)
            counts[:4] = 0.0  # PAD, BOS, EOS, UNK (as the trainer's unigram)
            ctx = AlgorithmContext(
                vocab_size=vocab[1],
                label_smoothing=tc.label_smoothing,
                tgt_tokenizer=task.tgt_tokenizer,
                build_model=lambda c=cfg, v=vocab: build_model(c.model.arch, *v, **c.model.options),
                unigram=torch.from_numpy(counts / max(counts.sum(), 1.0)).float(),
            )
            algorithm = build_algorithm(cfg.algorithm.name, ctx, cfg.algorithm.options)
        except Exception as e:  # noqa: BLE001  (the run itself checks when it starts)
            echo(f"[compare] {run.name}: schedules not checked before training ({type(e).__name__}: {e})")
            continue
        try:
            stages[run.label] = check_schedule_budget(algorithm, per_epoch, total, tc.allow_short_schedules)
        except ConfigError as e:
            raise ConfigError(f"run {run.name}: {e}") from None
    return stages


# ---------------------------------------------------------------------------------------------- scoring
def _extra_args(spec: CompareSpec) -> list[str]:
    return [a for name, (src, ref) in spec.extra_tests.items() for a in ("--extra-test", f"{name}={src},{ref}")]


def plan_scoring(spec: CompareSpec, out: Path, runs: Sequence[Run], config: str) -> list[Run]:
    """The shared checkpoint on test and every extra test set (``OUT/start``), and every finished run's best
    checkpoint on the extra test sets (``run_dir/extra``)."""
    names = list(spec.extra_tests)
    jobs = []
    init = start_checkpoint(spec, out)
    if init and Path(init).exists():
        args = [
            "--checkpoint",
            init,
            "--config",
            config,
            "--tokenizers",
            str(tokenizer_source(out, spec.init_from)),
            "--out",
            str(out / START_DIR),
            "--test",
            *_extra_args(spec),
        ]
        jobs.append(Run("start checkpoint", out / START_DIR, [], kind="score", args=args, sets=["test", *names]))
    for run in runs:
        if not names or not run.done:
            continue
        best = run.run_dir / "checkpoint_best.pt"
        ckpt = best if best.exists() else run.run_dir / "checkpoint_last.pt"
        args = [
            "--checkpoint",
            str(ckpt),
            "--config",
            str(run.run_dir / "config.yaml"),
            "--tokenizers",
            str(run.run_dir / "tokenizers"),
            "--out",
            str(run.run_dir / EXTRA_DIR),
            *_extra_args(spec),
        ]
        jobs.append(Run(f"{run.name} extra tests", run.run_dir / EXTRA_DIR, [], kind="score", args=args, sets=names))
    return jobs


def write_extra_references(out: Path, spec: CompareSpec) -> Path | None:
    """``OUT/extra_tests.refs.json``: each extra test set's files and references (for the report's tests)."""
    if not spec.extra_tests:
        return None
    from seqlab.data.corpus import read_parallel

    path = out / "extra_tests.refs.json"
    data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    for name, (src, ref) in spec.extra_tests.items():
        if name in data and not (Path(src).is_file() and Path(ref).is_file()):
            continue  # files gone since: keep the references read then
        _, refs = read_parallel(src, ref).references()
        data[name] = {"src": src, "ref": ref, "references": refs}
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


#: settings that name places (they change when a comparison folder moves between machines), not the run's training
PATH_SETTINGS = {"run_dir", "init_from", "tokenizers_from", "critic_from", "path"}
_UNSET = object()  # a setting the planned run leaves out


def changed_settings(saved: Any, planned: Any, where: str = "") -> list[str]:
    """The dotted names of the settings a finished run recorded (its saved config) with another value than what
    would be run now, leaving out the places (:data:`PATH_SETTINGS`).  A setting the run did not record (an option
    left at the default of its day, a setting added since) is not compared: its value then is not known."""
    if isinstance(saved, dict) and isinstance(planned, dict):
        names = []
        for key in sorted(saved, key=str):
            if key in PATH_SETTINGS:
                continue
            names += changed_settings(saved[key], planned.get(key, _UNSET), f"{where}{key}.")
        return names
    return [] if saved == planned else [where.rstrip(".")]


def check_runs(config: str, runs: Sequence[Run], prefix: Sequence[str] = ()) -> None:
    """Validate every run's config and algorithm options up front: a typo fails now, not hours later.  A finished
    run whose saved config differs from what would be run now (an algorithm's options changed in the suite) is an
    error, not a result to reuse: nothing is overwritten, and the message names the settings."""
    from seqlab.algorithms.base import resolved_options

    for run in runs:
        try:
            cfg = load_config(config, [*prefix, *run.overrides])
        except ConfigError as e:
            raise ConfigError(f"run {run.name}: {e}") from e
        unknown = set(cfg.algorithm.options) - algorithm_options(cfg.algorithm.name)
        if unknown:
            raise ConfigError(
                f"run {run.name}: algorithm {cfg.algorithm.name!r} has no option(s) {sorted(unknown)}; "
                f"known: {sorted(algorithm_options(cfg.algorithm.name))}"
            )
        saved_path = run.run_dir / "config.yaml"
        if run.kind == "train" and run.done and saved_path.exists():
            saved = yaml.safe_load(saved_path.read_text(encoding="utf-8")) or {}
            planned = json.loads(json.dumps(cfg.to_dict()))
            sections = ("algorithm", "train", "model", "decode")
            changed = changed_settings({k: saved.get(k) for k in sections}, {k: planned.get(k) for k in sections})
            recorded = json.loads((run.run_dir / "results.json").read_text(encoding="utf-8")).get("algorithm_options")
            if recorded is not None and saved.get("algorithm", {}).get("name") == cfg.algorithm.name:
                now = resolved_options(cfg.algorithm.name, cfg.algorithm.options)  # defaults as they are today
                resolved = [f"algorithm.options.{k}" for k in changed_settings(recorded, now)]
                changed += [name for name in resolved if name not in changed]
            if changed:
                raise ConfigError(
                    f"run {run.name} finished with other settings than this comparison now gives it "
                    f"({', '.join(changed)}; saved in {saved_path}); move {run.run_dir} away (or use a new --out) "
                    "to run it again"
                )


# ---------------------------------------------------------------------------------------------- GPUs
def detect_gpus(spec: str) -> list[str]:
    """GPU ids to spread runs over: ``auto`` (all visible), ``none`` (run in sequence), or ``0,1``."""
    spec = str(spec).strip().lower()
    if spec in ("none", "cpu", ""):
        return []
    if spec != "auto":
        return [g.strip() for g in spec.split(",") if g.strip()]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        import torch

        count = torch.cuda.device_count()
    except Exception:  # noqa: BLE001  (no usable CUDA: run in sequence)
        count = 0
    if visible is not None:
        ids = [g.strip() for g in visible.split(",") if g.strip()]
        return ids[:count] if count else []
    return [str(i) for i in range(count)]


# ---------------------------------------------------------------------------------------------- execution
Launcher = Callable[[Run, str, "str | None"], int]
#: what runs sharing a GPU leave free for the CUDA contexts themselves
GPU_SHARE_HEADROOM = 0.95


def train_command(config: str, run: Run) -> list[str]:
    """``python -m seqlab.compare train ...``: ``seqlab train`` (``python -m seqlab.compare score ...`` for a
    scoring job); the subprocess inherits ``$SEQLAB_PLUGINS``."""
    if run.kind == "score":
        return [sys.executable, "-m", "seqlab.compare", "score", *run.args]
    return [sys.executable, "-m", "seqlab.compare", "train", "--config", config, *run.overrides]


def run_job(run: Run, config: str) -> launch.Job:
    """``run`` as a :mod:`seqlab.launch` job: its command, its log in its run directory, in this working directory."""
    return launch.Job(
        run.name, train_command(config, run), run.run_dir / run.log_name, finished=lambda: run.done, cwd=None
    )


def subprocess_launcher(run: Run, config: str, gpu: str | None, memory_fraction: float | None = None) -> int:
    """Run ``seqlab train`` (or a scoring job) in a subprocess, its output appended to ``run_dir/train.out``
    (``score.out``).  ``memory_fraction``: the share of the GPU's memory the run may hold (when runs share a GPU)."""
    returncode, _ = launch.spawn(run_job(run, config), launch.Slot(gpu, memory_fraction))
    return returncode


#: what :func:`execute` returns for each run
RunOutcome = launch.Outcome


class _CompareMessages(launch.Messages):
    """``[compare] start RUN (GPU g)`` and ``[compare] done RUN in Ns [k/n]``; skipped runs are not echoed."""

    def __init__(self, runs: dict[str, Run]):
        self.runs = runs

    def skipped(self, job: launch.Job) -> None:
        return None

    def started(self, job: launch.Job, slot: launch.Slot) -> str:
        return f"[compare] start {job.name} ({'in sequence' if slot.gpu is None else f'GPU {slot.gpu}'})"

    def ended(self, job: launch.Job, outcome: launch.Outcome, count: int, total: int) -> str:
        run = self.runs[job.name]
        tail = "" if outcome.status == "done" else f" (exit {outcome.returncode}; see {run.run_dir / run.log_name})"
        return f"[compare] {outcome.status} {job.name} in {outcome.seconds:.0f}s [{count}/{total}]{tail}"


def execute(
    runs: Sequence[Run],
    config: str,
    gpus: Sequence[str],
    launcher: Launcher = subprocess_launcher,
    echo: Callable[[str], None] = print,
    before: Callable[[Run], None] | None = None,
    runs_per_gpu: int = 1,
    memory_share: float | None = None,
) -> list[RunOutcome]:
    """Run what is not done yet (:func:`seqlab.launch.run_jobs`): ``runs_per_gpu`` runs on each GPU at a time,
    each holding at most ``memory_share / runs_per_gpu`` of its memory when ``memory_share`` is given, or in
    sequence without GPUs.  ``before(run)`` runs just before a run starts; a ``launcher`` other than
    :func:`subprocess_launcher` (a test's fake) is called with each run, its config and its GPU."""
    if runs_per_gpu < 1:
        raise ConfigError(f"runs_per_gpu must be at least 1, got {runs_per_gpu}")
    jobs = []
    for run in runs:
        job = run_job(run, config)
        if launcher is not subprocess_launcher:
            job.work = functools.partial(_launch_on_slot, launcher, run, config)
        if before is not None:
            job.before = functools.partial(before, run)
        jobs.append(job)
    messages = _CompareMessages({run.name: run for run in runs})
    return launch.run_jobs(
        jobs, gpus, per_gpu=runs_per_gpu, memory_share=memory_share if gpus else None, echo=echo, messages=messages
    )


def _launch_on_slot(launcher: Launcher, run: Run, config: str, slot: launch.Slot) -> int:
    return launcher(run, config, slot.gpu)


OUT_OF_MEMORY_MARKERS = ("torch.OutOfMemoryError", "CUDA out of memory")


def ran_out_of_memory(run: Run) -> bool:
    """Whether the last attempt of ``run`` (the tail of its train.out) stopped on CUDA out-of-memory."""
    log = run.run_dir / "train.out"
    if not log.exists():
        return False
    last_attempt = log.read_text(encoding="utf-8", errors="replace").rsplit("\n$ ", 1)[-1]
    return any(marker in last_attempt for marker in OUT_OF_MEMORY_MARKERS)


# ---------------------------------------------------------------------------------------------- the whole thing
def tokenizer_source(out: Path, init_from: str | None) -> Path:
    """The tokenizers of the shared checkpoint: the pre-training's, or those of ``--init-from``'s run."""
    if init_from:
        from seqlab.train import checkpoint as ckpt

        saved = Path(str(ckpt.load(init_from).get("tokenizers", "")))
        return saved if saved.is_dir() else Path(init_from).resolve().parent / "tokenizers"
    return out / "pretrain" / "tokenizers"


def _share_tokenizers(source: Path) -> Callable[[Run], None]:
    """Copy the shared checkpoint's tokenizers into a run before it starts (same vocabulary guaranteed)."""

    def copy(run: Run) -> None:
        target = run.run_dir / "tokenizers"
        if source.is_dir() and not target.exists():
            shutil.copytree(source, target)

    return copy


def _with_added_defaults(before: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``before`` with the train / decode settings that seqlab added since it was written filled in, where the
    new fingerprint holds them at their defaults: a new option at its default changes no finished run."""
    defaults = {"train": asdict(TrainConfig()), "decode": asdict(DecodeConfig())}
    old_cfg, new_cfg = before.get("config"), new.get("config")
    if not isinstance(old_cfg, dict) or not isinstance(new_cfg, dict):
        return before
    filled = {**old_cfg}
    for section, section_defaults in defaults.items():
        old_sec, new_sec = old_cfg.get(section), new_cfg.get(section)
        if not isinstance(old_sec, dict) or not isinstance(new_sec, dict):
            continue
        added = {
            k: v
            for k, v in new_sec.items()
            if k not in old_sec and k in section_defaults and v == json.loads(json.dumps(section_defaults[k]))
        }
        filled[section] = {**old_sec, **added}
    return {**before, "config": filled}


def _fill_protocol_defaults(before: dict[str, Any]) -> dict[str, Any]:
    """A fingerprint written before compare recorded the protocol: weights-only starts, and the task config's
    label smoothing."""
    filled = dict(before)
    filled.setdefault("init_state", "model")
    filled.setdefault("share_critic", False)
    train = (before.get("config") or {}).get("train") or {}
    filled.setdefault("label_smoothing", float(train.get("label_smoothing", TrainConfig.label_smoothing)))
    return filled


#: shared settings that only the runs (not the pre-training) depend on
RUN_ONLY_SETTINGS = ("init_state", "label_smoothing", "share_critic")


def has_finished_runs(out: Path) -> bool:
    """Whether any (algorithm, seed) run of the comparison in ``out`` has finished (its results.json)."""
    return any((out / "runs").glob("*/seed*/results.json"))


def _check_plan(out: Path, spec: CompareSpec) -> dict[str, list[str]]:
    """Refuse to mix runs with different shared settings in one directory (adding algorithms / seeds / extra test
    sets is fine); returns the extra test sets of this and earlier invocations."""
    path = out / "compare.json"
    new = spec.fingerprint()
    extra = dict(spec.extra_tests)
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        before = _fill_protocol_defaults(_with_added_defaults(old.get("fingerprint", {}), new))
        extra = {**old["spec"].get("extra_tests", {}), **extra}
        changed = sorted(k for k in new if before.get(k) != new[k])
        if "init_from" in changed and _same_start_weights(out, new["init_from"]):
            changed.remove("init_from")  # the start moved (another machine's path): its weights are the same
        if set(changed) <= set(RUN_ONLY_SETTINGS) and not has_finished_runs(out):
            changed = []  # no run has finished: settings of the runs alone may still change
        if changed:
            raise ConfigError(
                f"{out} holds a comparison with different {', '.join(changed)}; use a new --out "
                f"directory (finished runs there would not be comparable)"
            )
        algorithms = list(dict.fromkeys(old["spec"]["algorithms"] + spec.algorithms))
        seeds = list(dict.fromkeys(old["spec"]["seeds"] + spec.seeds))
    else:
        algorithms, seeds = spec.algorithms, spec.seeds
    record = {
        "spec": {**asdict(spec), "algorithms": algorithms, "seeds": seeds, "extra_tests": extra},
        "fingerprint": new,
    }
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2), encoding="utf-8")
    return extra


def _same_start_weights(out: Path, init_from: str | None) -> bool:
    """Whether ``init_from`` holds the weights the comparison's runs started from (its digest in
    ``OUT/start/checkpoint.json``): the same start at another path, e.g. re-made on another machine."""
    from seqlab.train.checkpoint import weights_digest

    recorded = _read_json(out / START_DIR / "checkpoint.json").get("weights_sha1")
    return bool(recorded and init_from and Path(init_from).is_file()) and recorded == weights_digest(init_from)


def _start_note(spec: CompareSpec, out: Path) -> str:
    """One line on what the runs start from (echoed before training)."""
    if start_checkpoint(spec, out) is None:
        return "runs start from scratch"
    if spec.init_state == "model":
        return "runs start from the shared checkpoint's weights with a fresh optimizer (init_state model)"
    settings = ", ".join(f"{k} {v}" for k, v in start_settings(spec, out).items())
    return (
        f"runs continue the shared checkpoint's optimizer state and lr schedule ({settings}; "
        "per-algorithm overrides still apply)"
    )


def check_start_weights(path: str | Path) -> None:
    """Refuse a shared checkpoint whose weights were rounded below fp32 (e.g. by benchmarks/ckpt_weights.py):
    fine-tuning must start from the weights the pre-training trained, with its optimizer state."""
    from seqlab.train import checkpoint as ckpt
    from seqlab.train.trainer import reduced_precision_dtypes

    reduced = reduced_precision_dtypes(ckpt.load(path)["model"])
    if reduced:
        raise ConfigError(
            f"the shared checkpoint {path} holds {', '.join(reduced)} weights: runs would start from rounded weights "
            "without the pre-training's optimizer state. Restore the fp32 checkpoint (benchmarks/ckpt_weights.py "
            "keeps it as CKPT.full), or pass --init-state model to start from these weights anyway"
        )


def write_test_references(out: Path, cfg: Config) -> Path:
    """Dump the test split's sources' references (list of lists) for the report's bootstrap tests."""
    from seqlab.tasks import load_task

    path = out / "test.refs.json"
    if path.exists():
        return path
    tok_dir = out / "pretrain" / "tokenizers"
    if not (tok_dir / "src").is_dir():
        runs = sorted((out / "runs").glob("*/seed*/tokenizers"))
        tok_dir = runs[0] if runs else out / "tokenizers"
    task = load_task(cfg.task.name, cfg.task.options, tok_dir)
    _, refs = task.test.references()
    path.write_text(json.dumps({"metrics": list(task.metrics), "references": refs}), encoding="utf-8")
    return path


def run_compare(
    spec: CompareSpec,
    launcher: Launcher = subprocess_launcher,
    echo: Callable[[str], None] = print,
    report: bool = True,
    pretrain_only: bool = False,
    critics_only: bool = False,
) -> dict[str, Any]:
    """Pre-train (once), run every (algorithm, seed) not yet finished, then write the report.
    ``pretrain_only`` stops after the shared pre-training (to inspect or convert its checkpoint first);
    ``critics_only`` after the shared critics, with the runs that start from no shared critic trained beside them
    (a stage that fits one device call; a later call resumes with the runs that start from the critics)."""
    out = Path(spec.out).resolve()
    _check_spec(spec, echo)
    spec = replace(spec, extra_tests=_check_plan(out, spec))
    base = load_config(spec.config, spec.overrides)
    task_yaml = out / "task.yaml"
    save_config(base, task_yaml)
    config = str(task_yaml)
    pre = plan_pretrain(spec, out)
    runs, critics = plan_runs(spec, out), plan_critics(spec, out)
    check_runs(config, ([pre] if pre else []) + critics + runs)
    _echo_schedule_stages(config, pre, runs, tokenizer_source(out, spec.init_from), echo)
    echo(f"[compare] every run: label smoothing {spec.resolved_label_smoothing():g}; " + _start_note(spec, out))
    gpus = detect_gpus(spec.gpus)
    outcomes = _pretrain(pre, out, config, gpus, launcher, echo)
    if pretrain_only:
        return {"out": str(out), "gpus": gpus, "outcomes": [asdict(o) for o in outcomes], "failed": []}
    init = start_checkpoint(spec, out)
    if init and (critics or runs):  # once, before anything trains from the start
        _verify_start(spec, out, config, gpus, launcher, echo)
        check_start_digest(out, Path(init), echo)
    beside = [run for run in runs if critic_phase(spec, run.label) is None] if critics_only else []
    if critics or beside:
        outcomes += _train_runs(spec, out, config, [*critics, *beside], gpus, launcher, echo)
        missing = [c.name for c in critics if not (c.run_dir / "checkpoint_last.pt").exists()]
        if missing:
            raise RuntimeError(f"shared critic pre-training failed for {missing}; see their train.out under {out}")
    if critics_only:
        return {"out": str(out), "gpus": gpus, "outcomes": [asdict(o) for o in outcomes], "failed": _failed(outcomes)}
    outcomes += _train_runs(spec, out, config, runs, gpus, launcher, echo)
    write_extra_references(out, spec)
    scoring = plan_scoring(spec, out, runs, config)
    memory_share = _memory_share(spec, gpus)
    outcomes += execute(
        scoring, config, gpus, launcher, echo, runs_per_gpu=spec.runs_per_gpu, memory_share=memory_share
    )
    summary: dict[str, Any] = {
        "out": str(out),
        "gpus": gpus,
        "outcomes": [asdict(o) for o in outcomes],
        "failed": _failed(outcomes),
    }
    if report:
        summary["report"] = _write_report(out, base, echo)
    return summary


def _failed(outcomes: Sequence[RunOutcome]) -> list[str]:
    return [o.name for o in outcomes if o.status == "failed"]


def _check_spec(spec: CompareSpec, echo: Callable[[str], None]) -> None:
    """A note when the baseline is not compared; a missing ``--init-from`` checkpoint stops here."""
    if spec.baseline not in spec.algorithms:
        echo(
            f"[compare] note: the baseline {spec.baseline!r} is not among the algorithms; "
            "the report will have no significance column"
        )
    if spec.init_from and not Path(spec.init_from).exists():
        raise FileNotFoundError(f"--init-from checkpoint not found: {spec.init_from}")


def _echo_schedule_stages(
    config: str, pre: Run | None, runs: Sequence[Run], tokenizers: Path, echo: Callable[[str], None]
) -> None:
    """Check (and echo) each algorithm's schedule stages within the budget, on the shared tokenizers: those of
    the pre-training are built now (the pre-training then uses them)."""
    if pre is not None and not (tokenizers / "src").is_dir():
        from seqlab.tasks import load_task

        pre_cfg = load_config(config, pre.overrides)
        load_task(pre_cfg.task.name, pre_cfg.task.options, tokenizers)
    if (tokenizers / "src").is_dir():
        for label, counted in check_schedules(config, runs, tokenizers, echo).items():
            echo(f"[compare] {label}: schedule stages within the budget: {counted}")


def _pretrain(
    pre: Run | None, out: Path, config: str, gpus: Sequence[str], launcher: Launcher, echo: Callable[[str], None]
) -> list[RunOutcome]:
    """The shared pre-training (on the first GPU), unless there is none or it is done; it must leave its
    checkpoint."""
    if pre is None:
        return []
    from seqlab.compare.report import degenerate_checkpoint_warning

    outcomes = execute([pre], config, gpus[:1], launcher, echo)
    if not pretrain_checkpoint(out).exists():
        raise RuntimeError(f"pre-training failed: no {pretrain_checkpoint(out)}; see {out / 'pretrain' / 'train.out'}")
    warning = degenerate_checkpoint_warning(out)
    if warning:
        echo(f"[compare] warning: {warning}")
    check_same_start(out)
    return outcomes


#: how far (BLEU / chrF points) a pre-training run again may score from the start the finished runs had
SAME_START_TOLERANCE = 0.01


def _refuse_other_start(out: Path, before: dict[str, float], now: dict[str, float], what: str) -> None:
    """Stop when the start's test scores ``now`` differ from the ones the finished runs' start had (``before``)."""
    differ = {m: (before[m], now[m]) for m in sorted(before.keys() & now.keys())}
    differ = {m: pair for m, pair in differ.items() if abs(pair[0] - pair[1]) > SAME_START_TOLERANCE}
    if now and not differ:
        return
    scores = "; ".join(f"{m} {new:.2f} against {old:.2f}" for m, (old, new) in differ.items()) or "not scored"
    raise ConfigError(
        f"{out}: {what} is not the one the finished runs started from (test {scores}); new runs would not be "
        "comparable with them: use a new --out directory"
    )


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def check_same_start(out: Path) -> None:
    """A pre-training run again (a comparison resumed without its checkpoint, or with other code) must give the
    checkpoint the finished runs started from: its test scores are compared with the start's (``OUT/start``)."""
    from seqlab.compare.score import read_scores

    before = read_scores(out / START_DIR).get("test", {})
    now = _read_json(out / "pretrain" / "results.json").get("test", {})
    if before and now:  # a pre-training without test scores (stopped before its test) is not a start yet
        _refuse_other_start(out, before, now, "the shared pre-training ran again and its checkpoint")


def _verify_start(
    spec: CompareSpec, out: Path, config: str, gpus: Sequence[str], launcher: Launcher, echo: Callable[[str], None]
) -> None:
    """A comparison whose finished runs predate the weights digest (no ``OUT/start/checkpoint.json``) but whose
    start was scored on test: the start it would train from now is scored again (``OUT/start/verify``) and must
    score the same, before any run trains from it.  (A pre-training's own test scores answer this for its
    checkpoint: :func:`check_same_start`.)"""
    from seqlab.compare.score import read_scores

    start, init = out / START_DIR, str(start_checkpoint(spec, out))
    before = read_scores(start).get("test", {})
    finished = has_finished_runs(out)
    scored_pretraining = not spec.init_from and "test" in _read_json(out / "pretrain" / "results.json")
    if (start / "checkpoint.json").exists() or not before or not finished or scored_pretraining:
        return
    verify = start / "verify"
    args = [
        *("--checkpoint", init, "--config", config, "--tokenizers", str(tokenizer_source(out, spec.init_from))),
        *("--out", str(verify), "--test"),
    ]
    execute(
        [Run("start checkpoint (verify)", verify, [], kind="score", args=args, sets=["test"])],
        config,
        gpus[:1],
        launcher,
        echo,
    )
    _refuse_other_start(out, before, read_scores(verify).get("test", {}), f"the start {init} (scored in {verify})")


def check_start_digest(out: Path, checkpoint: Path, echo: Callable[[str], None] = print) -> None:
    """The start's weights digest is kept in ``OUT/start/checkpoint.json`` when runs first train from it; a later
    invocation whose start has other weights (pre-trained again, or another file at the ``--init-from`` path)
    stops here, before any run trains from it."""
    from seqlab.train.checkpoint import weights_digest

    record = out / START_DIR / "checkpoint.json"
    digest = weights_digest(checkpoint)
    if record.exists():
        before = json.loads(record.read_text(encoding="utf-8"))
        if before["weights_sha1"] != digest:
            raise ConfigError(
                f"{out}: the start {checkpoint} has other weights than the one the finished runs started from "
                f"(weights sha1 {digest[:12]} against {before['weights_sha1'][:12]}, recorded in {record}); new runs "
                "would not be comparable with them: use a new --out directory"
            )
        return
    if has_finished_runs(out) or any((out / "critics").glob("*/results.json")):
        echo(f"[compare] note: runs finished before the start's weights were recorded; {checkpoint} is taken as theirs")
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"checkpoint": str(checkpoint), "weights_sha1": digest}, indent=2), encoding="utf-8")


def _memory_share(spec: CompareSpec, gpus: Sequence[str]) -> float | None:
    """Of each GPU's memory, what the runs sharing it hold together (None: uncapped, one run alone on a GPU)."""
    if not 0.0 < spec.gpu_memory_share <= 1.0:
        raise ConfigError(f"gpu_memory_share must be in (0, 1], got {spec.gpu_memory_share}")
    capped = spec.runs_per_gpu > 1 or spec.gpu_memory_share < GPU_SHARE_HEADROOM
    return spec.gpu_memory_share if gpus and capped else None


def _train_runs(
    spec: CompareSpec,
    out: Path,
    config: str,
    runs: Sequence[Run],
    gpus: Sequence[str],
    launcher: Launcher,
    echo: Callable[[str], None],
) -> list[RunOutcome]:
    """Every (algorithm, seed) run not finished, ``runs_per_gpu`` per GPU, each with the shared tokenizers; runs
    that ran out of GPU memory while sharing run again once the others are done, one per GPU."""
    init = start_checkpoint(spec, out)
    if init and spec.init_state == "full":
        check_start_weights(init)
    share = _share_tokenizers(tokenizer_source(out, spec.init_from))
    memory_share = _memory_share(spec, gpus)
    outcomes = execute(
        runs, config, gpus, launcher, echo, before=share, runs_per_gpu=spec.runs_per_gpu, memory_share=memory_share
    )
    retry = [r for r in runs if not r.done and ran_out_of_memory(r)] if gpus and spec.runs_per_gpu > 1 else []
    if not retry:
        return outcomes
    echo(f"[compare] {len(retry)} run(s) ran out of GPU memory while sharing; again, one per GPU")
    failed_first = {r.name for r in retry}
    alone = spec.gpu_memory_share if spec.gpu_memory_share < GPU_SHARE_HEADROOM else None  # other work keeps the rest
    return [o for o in outcomes if o.name not in failed_first] + execute(
        retry, config, gpus, launcher, echo, before=share, memory_share=alone
    )


def _write_report(out: Path, base: Config, echo: Callable[[str], None]) -> dict[str, str]:
    """report.md, report.html and the figures (with significance tests when the test references load)."""
    from seqlab.compare.report import write_report

    try:
        write_test_references(out, config_from_dict(apply_overrides(base.to_dict(), [])))
    except Exception as e:  # noqa: BLE001  (the report still works, without significance tests)
        echo(f"[compare] could not load test references ({e}); no significance tests")
    paths = write_report(out)
    echo(f"[compare] report: {paths['markdown']} and {paths['html']}")
    return {k: str(v) for k, v in paths.items()}
