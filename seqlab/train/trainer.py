"""The trainer: one loop for every algorithm.

batch -> algorithm.loss (proposals, coefficients, the one loss) -> backward -> clip -> optimizer.
bf16 autocast on CUDA, DDP through torchrun, evaluation with best-checkpoint selection and early
stopping, and exact resume (model, optimizer, scheduler, algorithm, data position, RNG).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import gc
import json
import math
import os
import random
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.profiler import record_function
from tqdm.auto import tqdm

from seqlab.algorithms.base import Algorithm, AlgorithmContext, Progress, build_algorithm, resolved_options
from seqlab.catalog import check_config
from seqlab.config import Config, ConfigError, save_config
from seqlab.data.batching import TokenBatchSampler, batch_dims, collate, encode_corpus
from seqlab.data.tasks import load_task
from seqlab.erpo.budget import check_schedule_budget
from seqlab.erpo.engine import loss_chunk_tokens
from seqlab.metrics import bleu_length_ratio, higher_is_better
from seqlab.metrics.signature import sacrebleu_signatures
from seqlab.models import build_model
from seqlab.provenance import code_commit
from seqlab.train import checkpoint as ckpt
from seqlab.train.compiled import bucket_batch, compile_layers
from seqlab.train.distributed import (
    AGREE_EVERY,
    DeferredAgreement,
    all_ranks,
    barrier,
    broadcast_flag,
    broadcast_value,
    cleanup,
    init_distributed,
)
from seqlab.train.evaluate import evaluate_corpus
from seqlab.train.graphed import DDP_EAGER_STEPS, GraphedStep
from seqlab.train.logger import MetricLogger
from seqlab.train.profiling import StepProfiler
from seqlab.train.runstate import StopSignals, TrainingInterrupted, finished_run
from seqlab.utils import resolve_device


class _LossModule(nn.Module):
    """Model + algorithm as one module, so DDP sees every parameter the loss touches."""

    def __init__(self, model: nn.Module, algorithm: nn.Module):
        super().__init__()
        self.model, self.algorithm = model, algorithm

    def forward(self, batch: Any, progress: Progress) -> tuple[torch.Tensor, dict[str, float]]:
        return self.algorithm.loss(self.model, batch, progress)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_optimizer(params: list[Any], cfg: Any) -> torch.optim.Optimizer:
    """``params``: parameters or parameter groups (dicts with "params" and their own "lr")."""
    flat = [p for g in params for p in (g["params"] if isinstance(g, dict) else [g])]
    fused = bool(flat) and flat[0].is_cuda  # one fused kernel per step on the GPU
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(
            params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, fused=fused or None
        )
    if cfg.optimizer == "adam":
        return torch.optim.Adam(
            params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, fused=fused or None
        )
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose adamw, adam or sgd")


def lr_lambda(cfg: Any, total_steps: int | None):
    """Multiplier on the base learning rate for each scheduler (warmup for all but constant)."""
    warm = max(cfg.warmup_steps, 1)

    def inverse_sqrt(step: int) -> float:
        step = max(step, 1)
        return min(step / warm, math.sqrt(warm / step))

    def with_decay(shape: str):
        def f(step: int) -> float:
            if step < warm:
                return max(step, 1) / warm
            if not total_steps:
                return 1.0
            frac = min((step - warm) / max(total_steps - warm, 1), 1.0)
            return 1.0 - frac if shape == "linear" else 0.5 * (1 + math.cos(math.pi * frac))

        return f

    table = {
        "inverse_sqrt": inverse_sqrt,
        "constant": lambda step: 1.0,
        "linear": with_decay("linear"),
        "cosine": with_decay("cosine"),
    }
    if cfg.scheduler not in table:
        raise ValueError(f"unknown scheduler {cfg.scheduler!r}; choose from {sorted(table)}")
    return table[cfg.scheduler]


def load_model_weights(model: nn.Module, path: str | Path) -> None:
    state = ckpt.load(path)
    model.load_state_dict(state["model"])


#: what ``train.init_from`` continues: the model's weights only, or also the optimizer and lr schedule
INIT_STATES = ("model", "full")
#: share of the step budget over which a continued run warms up the groups the checkpoint has no moments for
INIT_WARMUP_FRACTION = 0.1


def reduced_precision_dtypes(weights: dict[str, torch.Tensor]) -> list[str]:
    """The floating dtypes below fp32 among a checkpoint's weights (e.g. bf16 after rounding for transfer)."""
    return sorted(
        {
            str(t.dtype).removeprefix("torch.")
            for t in weights.values()
            if t.is_floating_point() and t.dtype in (torch.bfloat16, torch.float16)
        }
    )


def init_warmup_steps(tc: Any, total_steps: int | None) -> int:
    """Warm-up of a continued run's groups without optimizer moments: ``train.init_warmup_steps``, else
    10 % of the step budget (at least 1), else ``train.warmup_steps`` (a budget in minutes only)."""
    if tc.init_warmup_steps is not None:
        return max(int(tc.init_warmup_steps), 1)
    if total_steps:
        return max(math.ceil(INIT_WARMUP_FRACTION * total_steps), 1)
    return max(int(tc.warmup_steps), 1)


def warn_finetune_lr(algorithm: Algorithm, tc: Any) -> None:
    """Warn when a trained model is fine-tuned above the algorithm's known-safe learning rate."""
    limit = algorithm.max_finetune_lr
    if tc.init_from and limit is not None and tc.lr > limit:
        warnings.warn(
            f"algorithm {algorithm.name!r} fine-tunes {tc.init_from} at lr {tc.lr:g}; above "
            f"{limit:g} it tends to collapse (it learns from the model's own samples): consider "
            f"train.lr={limit:g} or lower",
            stacklevel=2,
        )


#: the share of the GPU's memory a run may hold (``seqlab compare --runs-per-gpu`` sets it)
MEMORY_FRACTION_ENV = "SEQLAB_CUDA_MEMORY_FRACTION"


def share_gpu_memory(env: dict[str, str], fraction: float) -> dict[str, str]:
    """``env`` for a training subprocess that may hold ``fraction`` of its GPU's memory (expandable segments, so
    that a capped cache fragments less)."""
    env[MEMORY_FRACTION_ENV] = f"{fraction:.4f}"
    env.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    return env


def limit_cuda_memory(device: torch.device) -> None:
    """Cap the CUDA caching allocator at ``$SEQLAB_CUDA_MEMORY_FRACTION`` of the GPU (runs sharing one GPU):
    a run then frees its cache and retries at its share instead of starving its neighbours."""
    fraction = os.environ.get(MEMORY_FRACTION_ENV)
    if device.type == "cuda" and fraction:
        torch.cuda.set_per_process_memory_fraction(float(fraction), device.index or torch.cuda.current_device())


class Trainer:
    def __init__(self, cfg: Config, console: bool = True):
        check_config(cfg)  # names, option keys and values: before any data is loaded or any file written
        self.cfg, tc = cfg, cfg.train
        self._setup_device()
        self._prepare_run_dir(console)
        seed_everything(tc.seed)
        self._load_data()
        self.model = self._new_model().to(self.device)
        if tc.compile:  # the layers' training calls through torch.compile (seqlab.train.compiled)
            compile_layers(self.model)
        if tc.init_state not in INIT_STATES:
            raise ConfigError(f"train.init_state must be one of {INIT_STATES}, got {tc.init_state!r}")
        self.init_info: dict[str, Any] = {}  # how the run started (results.json "init")
        start = self._load_start(tc.init_from) if tc.init_from else None
        self._build_algorithm()
        self._build_optimization(start)
        self.step, self.epoch, self.train_seconds = 0, 0, 0.0
        self._rollback: dict[str, Any] | None = None  # the state a validation_anneal schedule returns to
        self.code_commit = code_commit()  # the code this process loaded (HEAD may move while it trains)
        self.best_score: float | None = None
        self.bad_evals = 0
        self._start_run()

    # ------------------------------------------------------------------ construction steps
    def _setup_device(self) -> None:
        """The device and the process group (under DDP, CUDA rank r trains on local GPU r)."""
        self.device = resolve_device(self.cfg.train.device)
        self.dist = init_distributed(self.device)
        if self.device.type == "cuda" and self.dist.enabled:
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        limit_cuda_memory(self.device)

    def _prepare_run_dir(self, console: bool) -> None:
        """``run_dir`` exists (rank 0 creates it and removes a killed save's temporaries)."""
        self.run_dir = Path(self.cfg.run_dir)
        self.console = console and self.dist.is_main
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            ckpt.remove_stale_temporaries(self.run_dir)  # left by a save that was killed
        self.profiler = StepProfiler(self.cfg.train.profile_steps, self.run_dir, self.device, self.dist.is_main)

    def _load_data(self) -> None:
        """The task with its tokenizers (copied from ``train.tokenizers_from``), the encoded training data and
        its token-budget batch sampler (this rank's shard)."""
        cfg, tc = self.cfg, self.cfg.train
        if tc.tokenizers_from and self.dist.is_main and not (self.run_dir / "tokenizers").exists():
            src = Path(tc.tokenizers_from)
            if not src.is_dir():
                raise FileNotFoundError(f"train.tokenizers_from: no tokenizers folder at {src}")
            shutil.copytree(src, self.run_dir / "tokenizers")
        # rank 0 builds (and caches) tokenizers first, the others then load them
        if self.dist.is_main:
            self.task = load_task(cfg.task.name, cfg.task.options, self.run_dir / "tokenizers")
        barrier(self.dist)
        if not self.dist.is_main:
            self.task = load_task(cfg.task.name, cfg.task.options, self.run_dir / "tokenizers")
        self.train_data = encode_corpus(
            self.task.train, self.task.src_tokenizer, self.task.tgt_tokenizer, max_len=tc.max_len
        )
        self.sampler = TokenBatchSampler(
            self.train_data.lengths(),
            max_tokens=tc.max_tokens,
            max_sentences=tc.max_sentences,
            shuffle=True,
            seed=tc.seed,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
        )

    def _build_algorithm(self) -> None:
        """The configured algorithm on the device, with its context (vocabulary, smoothing, unigram, ...)."""
        cfg, tc = self.cfg, self.cfg.train
        ctx = AlgorithmContext(
            vocab_size=self.task.tgt_tokenizer.vocab_size,
            label_smoothing=tc.label_smoothing,
            device=self.device,
            tgt_tokenizer=self.task.tgt_tokenizer,
            src_tokenizer=self.task.src_tokenizer,
            build_model=self._new_model,
            unigram=self._target_unigram(),
            valid_batches=self._valid_batches,
            log=lambda *a: self.logger.log(*a),
        )
        try:
            algorithm = build_algorithm(cfg.algorithm.name, ctx, cfg.algorithm.options)
        except ValueError as e:  # an option's value (its name was checked above)
            raise ConfigError(f"algorithm.options: {e}") from None
        self.algorithm = algorithm.to(self.device)
        warn_finetune_lr(self.algorithm, tc)

    def _build_optimization(self, start: dict[str, Any] | None) -> None:
        """Loss module, optimizer, step budget and schedule check, lr schedule (continuing ``start``'s
        optimizer when ``train.init_state`` is full), and the DDP wrapper."""
        tc = self.cfg.train
        self.loss_module: nn.Module = _LossModule(self.model, self.algorithm)
        self.optimizer = build_optimizer(self._param_groups(), tc)
        self.total_steps = self._estimate_total_steps()
        self.schedule_stages = check_schedule_budget(
            self.algorithm, len(self.sampler), self.total_steps, tc.allow_short_schedules
        )
        # the lr schedule runs at step + lr_offset (a continued run's position); group i's factor ramps up over
        # group_warmup[i] steps where its optimizer moments start fresh
        self.lr_offset, self.group_warmup = 0, [0] * len(self.optimizer.param_groups)
        if start is not None and tc.init_state == "full":
            self._continue_optimizer(start)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, [lambda step, g=g: self._lr_factor(g, step) for g in range(len(self.group_warmup))]
        )
        # train.cuda_graphs on CUDA: one side stream builds DDP, warms the captures up and captures them
        graphs = self._cuda_graphs() and self.device.type == "cuda" and self.algorithm.capturable_step
        self._graph_stream = torch.cuda.Stream(self.device) if graphs else None
        if self.dist.enabled:
            self.loss_module = self._distributed(self.loss_module)
        self.graphed = self._graphed_step()

    def _distributed(self, module: nn.Module) -> DistributedDataParallel:
        """``module`` under DDP.  For ``train.cuda_graphs`` on CUDA, as PyTorch's notes on capturing DDP ask: built
        on a side stream (the one the captures use), and without DDP's sampled runtime statistics after its first 10
        iterations (their timing events must not be recorded inside a graph and read after it)."""
        side = self._graph_stream
        with torch.cuda.stream(side) if side is not None else contextlib.nullcontext():
            ddp = DistributedDataParallel(
                module,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=self.algorithm.has_unused_parameters,
                broadcast_buffers=False,  # buffers are constants (position tables): no broadcast before each step
                gradient_as_bucket_view=True,
            )  # gradients live in the all-reduce buckets: no copy in and out
        if side is not None:
            torch.cuda.current_stream(self.device).wait_stream(side)
            ddp._set_ddp_runtime_logging_sample_rate(2**31 - 1)
        return ddp

    def _graphed_step(self) -> GraphedStep | None:
        """``train.cuda_graphs``: the fixed-shape step (captured on CUDA), or None (with a warning saying why) for an
        algorithm whose loss is not capturable.  Under DDP every rank pads a step to the same bucket (the largest
        batch of the step, :meth:`_step_dims`), captures after :data:`DDP_EAGER_STEPS` eager steps, and all ranks
        agree whether a capture succeeded: a graph holds the gradient all-reduce, which every rank must replay."""
        tc = self.cfg.train
        if not self._cuda_graphs():
            return None
        if tc.compile:
            raise ConfigError("train.compile and train.cuda_graphs are two ways to a faster step: set one of them")
        if not self.algorithm.capturable_step:
            name = self.cfg.algorithm.name
            warnings.warn(f"train.cuda_graphs is not used for {name}, whose loss is not capturable", stacklevel=3)
            return None
        if self.device.type != "cuda":
            warnings.warn("train.cuda_graphs: no CUDA device, so the fixed-shape step runs eagerly", stacklevel=3)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        # a captured graph must not keep autocast's cache of cast weights
        precision = functools.partial(self._precision, cache=False)
        ddp = {"eager_steps": DDP_EAGER_STEPS, "agree": functools.partial(all_ranks, self.dist, self.device)}
        options = {"stream": self._graph_stream, **(ddp if self.dist.enabled else {})}
        return GraphedStep(self.loss_module, params, self.device, True, precision, tc.cuda_graphs_width, **options)

    def _cuda_graphs(self) -> bool:
        """``train.cuda_graphs``, with null (the default) resolved: on for a capturable algorithm (MLE) training
        seqlab's Transformer on one GPU, without ``train.compile`` -- where it was measured (1.85x the eager steps in
        seqlab train on an H200, 1.56x in the bench; session 24); set it to true for other models, or under DDP."""
        tc = self.cfg.train
        if tc.cuda_graphs is not None:
            return tc.cuda_graphs
        return (
            self.device.type == "cuda"
            and not self.dist.enabled
            and not tc.compile
            and self.algorithm.capturable_step
            and self.cfg.model.arch == "transformer"
        )

    def _step_dims(self) -> tuple[int, int, int] | None:
        """Under DDP with ``train.cuda_graphs``: the largest (rows, source width, target width) among the batches
        every rank takes at this step (the sampler plans them alike on every rank), else None."""
        if self.graphed is None or not self.dist.enabled:
            return None
        peers = [batch_dims(self.train_data, b) for b in self.sampler.round_at(self.sampler.position - 1)]
        return tuple(max(d) for d in zip(*peers, strict=True))

    def _precision(self, cache: bool = True) -> contextlib.AbstractContextManager:
        """The context a training step's loss runs in: bf16 autocast on CUDA with ``train.bf16`` (``cache``: its
        cache of cast weights), else nothing."""
        if self.device.type == "cuda" and self.cfg.train.bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=cache)
        return contextlib.nullcontext()

    def _start_run(self) -> None:
        """config.yaml, the logger and the stop signals; resume from ``checkpoint_last.pt`` when there is one."""
        tc = self.cfg.train
        if self.dist.is_main:  # only now: a command that fails above never replaces a run's config.yaml
            save_config(self.cfg, self.run_dir / "config.yaml")
        self.logger = MetricLogger(self.run_dir, tensorboard=tc.tensorboard, enabled=self.dist.is_main)
        #: SIGINT / SIGTERM while training: stop after the step, save, raise TrainingInterrupted (see train())
        self.signals = StopSignals(announce=self.console)
        self._stopping, self._validated_step = False, -1
        self._agreement = DeferredAgreement(self.device)
        self._agreed_at, self._agreed_flags = -1, (False, False)
        if tc.resume and (self.run_dir / "checkpoint_last.pt").exists():
            self.load_checkpoint(self.run_dir / "checkpoint_last.pt")
            self.logger.resume(self.step)  # an interrupted attempt's later records are dropped: each step once

    # ------------------------------------------------------------------ setup helpers
    def _new_model(self) -> nn.Module:
        return build_model(
            self.cfg.model.arch,
            self.task.src_tokenizer.vocab_size,
            self.task.tgt_tokenizer.vocab_size,
            **self.cfg.model.options,
        )

    def _param_groups(self) -> list[dict[str, Any]]:
        """The model's (and algorithm's) parameters at the base learning rate, plus the algorithm's own groups
        with their ``lr_scale``."""
        special, groups, names = set(), [], []
        for i, g in enumerate(self.algorithm.optimizer_groups()):
            params = [p for p in g["params"] if p.requires_grad and id(p) not in special]
            special.update(id(p) for p in params)
            if params:
                groups.append({"params": params, "lr": self.cfg.train.lr * float(g.get("lr_scale", 1.0))})
                names.append(str(g.get("name", f"group{i}")))
        rest = [p for p in self.loss_module.parameters() if p.requires_grad and id(p) not in special]
        self._group_names = ["model", *names]  # by position: an optimizer state loaded later keeps the order
        return [{"params": rest, "lr": self.cfg.train.lr}, *groups]

    def _apply_optimizer_settings(self) -> None:
        """The algorithm's settings for this step (``Algorithm.optimizer_settings``): lr multiples on the scheduled
        lr (the scheduler sets every lr afresh after the step) and Adam's beta1; unnamed groups keep the config's."""
        settings = self.algorithm.optimizer_settings(self.progress())
        for name, group in zip(self._group_names, self.optimizer.param_groups, strict=True):
            s = settings.get(name, {})
            group["lr"] = group["lr"] * float(s.get("lr_scale", 1.0))
            if "betas" in group:
                group["betas"] = (float(s.get("beta1", self.cfg.train.betas[0])), float(self.cfg.train.betas[1]))

    def _valid_batches(self) -> Any:
        """The validation set as batches on the device, in a fixed order (for an algorithm's own modules)."""
        tc = self.cfg.train
        if getattr(self, "_valid_data", None) is None:
            self._valid_data = encode_corpus(
                self.task.valid, self.task.src_tokenizer, self.task.tgt_tokenizer, max_len=tc.max_len
            )
        sampler = TokenBatchSampler(
            self._valid_data.lengths(), max_tokens=tc.max_tokens, max_sentences=tc.max_sentences, shuffle=False
        )
        for indices in sampler:
            yield collate(self._valid_data, indices).to(self.device)

    def _target_unigram(self) -> torch.Tensor:
        """Unigram distribution of the training targets over regular tokens (specials get zero mass)."""
        ids = np.asarray(self.train_data.tgt.data)
        counts = np.bincount(ids, minlength=self.task.tgt_tokenizer.vocab_size).astype(np.float64)
        counts[:4] = 0.0  # PAD, BOS, EOS, UNK
        if counts.sum() == 0:
            counts[4:] = 1.0
        return torch.from_numpy(counts / counts.sum()).float()

    def _estimate_total_steps(self) -> int | None:
        tc = self.cfg.train
        by_epochs = tc.max_epochs * len(self.sampler) if tc.max_epochs else None
        if tc.max_steps and by_epochs:
            return min(tc.max_steps, by_epochs)
        return tc.max_steps or by_epochs

    @property
    def primary_metric(self) -> str:
        return self.task.metrics[0]

    def progress(self) -> Progress:
        tc, fracs = self.cfg.train, []
        if self.total_steps:
            fracs.append(self.step / self.total_steps)
        if tc.max_minutes:
            fracs.append(self.train_seconds / 60.0 / tc.max_minutes)
        return Progress(
            step=self.step, epoch=self.epoch, fraction=min(max(fracs, default=0.0), 1.0), total_steps=self.total_steps
        )

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "algorithm": self.algorithm.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "param_names": self._group_param_names(),
            "lr_step": self.lr_offset + self.scheduler.last_epoch,
            "lr_schedule": {"offset": self.lr_offset, "warmup": list(self.group_warmup)},
            "sampler": self.sampler.state_dict(),
            "rng": ckpt.rng_state(),
            "step": self.step,
            "epoch": self.epoch,
            "train_seconds": self.train_seconds,
            "best_score": self.best_score,
            "bad_evals": self.bad_evals,
            "schedules": {k: s.state_dict() for k, s in self.algorithm.adaptive_schedules().items()},
            # saved between validations, the state a roll-back returns to (at a validation it is this state)
            "rollback": self._rollback if self._rollback is not None and self._rollback["step"] != self.step else None,
            "config": self.cfg.to_dict(),
            "tokenizers": str((self.run_dir / "tokenizers").resolve()),
        }

    def save_checkpoint(self, name: str) -> None:
        if self.dist.is_main:
            ckpt.atomic_save(self.state_dict(), self.run_dir / name)

    def load_checkpoint(self, path: Path) -> None:
        state = ckpt.load(path, map_location=self.device)
        self.model.load_state_dict(state["model"])
        self.algorithm.load_state_dict(state["algorithm"])
        self.optimizer.load_state_dict(state["optimizer"])
        if "lr_schedule" in state:  # before the scheduler state: its lr factors read these
            self.lr_offset = int(state["lr_schedule"]["offset"])
            self.group_warmup = [int(w) for w in state["lr_schedule"]["warmup"]]
        self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["sampler"])
        ckpt.set_rng_state(state["rng"])
        self.step, self.epoch = state["step"], state["epoch"]
        self.train_seconds, self.best_score = state["train_seconds"], state["best_score"]
        self.bad_evals = state["bad_evals"]
        adaptive = self.algorithm.adaptive_schedules()
        for name, sched_state in (state.get("schedules") or {}).items():
            if name in adaptive:
                adaptive[name].load_state_dict(sched_state)
        if adaptive:
            self._rollback = state.get("rollback")
            if self._rollback is None:  # saved at a validation: its state is the one to return to
                self._take_rollback_snapshot()
        if self.console:
            print(f"resumed from {path} at step {self.step} (epoch {self.epoch})")

    # ------------------------------------------------------------------ starting from a checkpoint
    def _load_start(self, path: str) -> dict[str, Any]:
        """Load ``train.init_from``'s weights into the model; returns the checkpoint (for ``init_state=full``)."""
        state = ckpt.load(path)
        reduced = reduced_precision_dtypes(state["model"])
        if reduced:
            warnings.warn(
                f"train.init_from {path}: weights stored in {', '.join(reduced)}, so training starts "
                "from rounded weights, not the fp32 weights its run trained (keep the full checkpoint, "
                "e.g. the .full copy benchmarks/ckpt_weights.py leaves)",
                stacklevel=2,
            )
        self.model.load_state_dict(state["model"])
        self.init_info = {
            "init_from": str(path),
            "init_state": self.cfg.train.init_state,
            "weights_dtype": reduced[0] if reduced else "float32",
            "checkpoint_step": state.get("step"),
        }
        return state

    def _core_module(self) -> nn.Module:
        return self.loss_module.module if isinstance(self.loss_module, DistributedDataParallel) else self.loss_module

    def _group_param_names(self) -> list[list[str]]:
        """The name (``model.*`` / ``algorithm.*``) of every parameter of every optimizer group, in order: a
        continued run matches optimizer moments by name, so groups may be added or reordered."""
        name_of = {id(p): n for n, p in self._core_module().named_parameters()}
        return [[name_of[id(p)] for p in g["params"]] for g in self.optimizer.param_groups]

    def _checkpoint_moments(self, start: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The start checkpoint's per-parameter optimizer state by parameter name ({} where it has none, or
        where its optimizer is of another kind)."""
        opt = start.get("optimizer")
        if not opt or not opt.get("state"):
            return {}
        kind = (start.get("config") or {}).get("train", {}).get("optimizer")
        if kind and kind != self.cfg.train.optimizer:
            warnings.warn(
                f"train.init_from: its optimizer is {kind}, this run's {self.cfg.train.optimizer}: "
                "the optimizer state is not continued",
                stacklevel=2,
            )
            return {}
        ids = [[int(i) for i in g["params"]] for g in opt["param_groups"]]
        names = start.get("param_names")
        if names is None:  # written before checkpoints named their parameters: group 0 starts with the model's
            model_names = [f"model.{n}" for n, p in self.model.named_parameters() if p.requires_grad]
            if not ids or len(ids[0]) < len(model_names):
                return {}
            names, ids = [model_names], [ids[0][: len(model_names)]]
        return {
            n: opt["state"][i]
            for gn, gi in zip(names, ids, strict=True)
            for n, i in zip(gn, gi, strict=True)
            if i in opt["state"]
        }

    def _continue_optimizer(self, start: dict[str, Any]) -> None:
        """``init_state=full``: the start checkpoint's optimizer moments (matched by parameter name, shapes
        checked) and its lr schedule position; a group with any parameter lacking moments warms up."""
        moments = self._checkpoint_moments(start)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        names = [n for g in self._group_param_names() for n in g]
        state, index, warm = {}, 0, init_warmup_steps(self.cfg.train, self.total_steps)
        fresh: list[str] = []
        for g, group in enumerate(self.optimizer.param_groups):
            complete = True
            for p in group["params"]:
                st = moments.get(names[index])
                if st is not None and all(
                    v.shape == p.shape for v in st.values() if isinstance(v, torch.Tensor) and v.dim() > 0
                ):
                    state[index] = st
                else:
                    complete = False
                    fresh.append(names[index])
                index += 1
            self.group_warmup[g] = 0 if complete else warm
        if state:
            sd = self.optimizer.state_dict()
            self.optimizer.load_state_dict({**sd, "state": state})  # casts to each parameter's device / dtype
        sched = start.get("scheduler") or {}
        self.lr_offset = int(start.get("lr_step", sched.get("last_epoch", start.get("step") or 0)))
        self.init_info.update(
            lr_step_offset=self.lr_offset,
            moments_continued=len(state),
            parameters=len(params),
            fresh_moments=fresh[:20],  # the parameters (first 20) that start with fresh moments
            warmup_steps_by_group=list(self.group_warmup),
        )
        if self.console:
            groups = ", ".join(
                f"group {g}: {'continued' if not w else f'{w} warm-up steps'}" for g, w in enumerate(self.group_warmup)
            )
            print(
                f"init_state=full: {len(state)}/{len(params)} parameters continue the optimizer state of "
                f"{self.cfg.train.init_from}; lr schedule at step {self.lr_offset} ({groups})"
            )

    def _lr_factor(self, group: int, step: int) -> float:
        """The lr multiplier of ``group`` at this run's ``step``: the schedule at ``step + lr_offset`` (decays
        end at this run's budget), times a linear warm-up where the group's moments start fresh."""
        total = self.total_steps + self.lr_offset if self.total_steps else None
        factor = lr_lambda(self.cfg.train, total)(step + self.lr_offset)
        warm = self.group_warmup[group]
        return factor * min((step + 1) / warm, 1.0) if warm else factor

    # ------------------------------------------------------------------ evaluation
    def evaluate(
        self, split: str = "valid", beam_size: int | None = None, max_examples: int | None = None
    ) -> tuple[dict[str, float], list[str]]:
        corpus = {"valid": self.task.valid, "test": self.task.test, "train": self.task.train}[split]
        return evaluate_corpus(
            self.model,
            corpus,
            self.task.src_tokenizer,
            self.task.tgt_tokenizer,
            self.task.metrics,
            self.cfg.decode,
            self.device,
            beam_size=beam_size,
            max_examples=max_examples,
            show_progress=self.console and split != "valid",
        )

    def _hypothesis_shape(self, hyps: list[str], max_examples: int | None) -> dict[str, float]:
        """The validation hypotheses' BLEU length ratio (``length_ratio``, BLEU tasks only), logged beside the scores:
        a policy that learns to stop early or to run on shows here first."""
        if "bleu" not in self.task.metrics:
            return {}
        refs = self.task.valid.references()[1]
        return {"length_ratio": bleu_length_ratio(hyps, refs[:max_examples] if max_examples is not None else refs)}

    def _validate(self, save_last: bool = True) -> bool:
        """Evaluate on valid (rank 0), keep the best checkpoint; returns True to stop early.  ``save_last=False``:
        the caller saved checkpoint_last.pt already (before the evaluation, so a resume continues as if there had
        been none)."""
        tc, stop = self.cfg.train, False
        self._validated_step = self.step
        last = Progress(step=self.step - 1, epoch=self.epoch)  # the step just taken
        if not self.algorithm.trains_model(last):  # e.g. critic pre-training: the model is unchanged
            if save_last:
                self.save_checkpoint("checkpoint_last.pt")
            return False
        score, better = 0.0, False
        if self.dist.is_main:
            scores, hyps = self.evaluate("valid", beam_size=tc.eval_beam_size, max_examples=tc.eval_max_examples)
            score = scores[self.primary_metric]
            better = self.best_score is None or (
                score > self.best_score if higher_is_better(self.primary_metric) else score < self.best_score
            )
            if better:
                self.best_score, self.bad_evals = score, 0
            else:
                self.bad_evals += 1
            shape = self._hypothesis_shape(hyps, tc.eval_max_examples)
            record = {**scores, **shape, "epoch": self.epoch, "train_seconds": self.train_seconds}
            self.logger.log("valid", self.step, record)
            if self.console:
                shown = ", ".join(f"{k} {v:.2f}" for k, v in scores.items())
                tqdm.write(f"step {self.step} epoch {self.epoch} valid: {shown}{' (best)' if better else ''}")
        if self.algorithm.adaptive_schedules():  # every rank: the schedules must stay equal
            self._anneal_on_validation(broadcast_value(score, self.dist, self.device))
        if self.dist.is_main:
            if save_last:
                self.save_checkpoint("checkpoint_last.pt")
            if better:
                self.save_checkpoint("checkpoint_best.pt")
            stop = tc.patience is not None and self.bad_evals >= tc.patience
        return broadcast_flag(stop, self.dist, self.device)

    def _anneal_on_validation(self, score: float) -> None:
        """Adaptive schedules (``validation_anneal``) observe the score; when one moves, the model and optimizer
        return to the previous validation's state, as the released interpolation code restores its previous
        epoch's checkpoint.  Then this validation's state becomes the one to return to."""
        if self.algorithm.on_validation(score, higher_is_better(self.primary_metric)) and self._rollback is not None:
            self.model.load_state_dict(self._rollback["model"])
            self.optimizer.load_state_dict(copy.deepcopy(self._rollback["optimizer"]))
            weights = {name: sched.at(0) for name, sched in self.algorithm.adaptive_schedules().items()}
            back = self._rollback["step"]
            values = {f"{name}_{i + 1}": float(v) for name, ws in weights.items() for i, v in enumerate(ws)}
            self.logger.log("anneal", self.step, {"rolled_back_to_step": back, **values})
            if self.console:
                moved = "; ".join(f"{name} ({', '.join(f'{v:.2f}' for v in ws)})" for name, ws in weights.items())
                tqdm.write(f"step {self.step}: validation fell; {moved}; rolled back to step {back}")
        self._take_rollback_snapshot()

    def _take_rollback_snapshot(self) -> None:
        self._rollback = {
            "step": self.step,
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
        }

    # ------------------------------------------------------------------ training
    def _budget_left(self) -> bool:
        tc = self.cfg.train
        if tc.max_steps is not None and self.step - self.algorithm.preparation_steps() >= tc.max_steps:
            return False
        if tc.max_minutes is not None and self._out_of_time():
            return False
        return self.epoch < tc.max_epochs

    def _out_of_time(self) -> bool:
        """``train.max_minutes`` spent.  Under DDP every rank measures its own time, so the ranks agree (every
        AGREE_EVERY steps, :meth:`_agreed`): ranks that stopped at different steps left one waiting in a gradient
        all-reduce after the other's final evaluation, and the run never exited."""
        return self._agreed()[0]

    def _agreed(self) -> tuple[bool, bool]:
        """(the wall-clock budget is spent, a signal asked to stop): this rank's own, or under DDP what every rank
        agreed, posted every AGREE_EVERY steps and read one period later (:class:`DeferredAgreement`: no wait for
        the device), so all ranks take the decision at the same step."""
        minutes = self.cfg.train.max_minutes
        flags = (minutes is not None and self.train_seconds >= minutes * 60, self.signals.requested is not None)
        if not self.dist.enabled:
            return flags
        if self.step % AGREE_EVERY == 0 and self._agreed_at != self.step:
            self._agreed_at = self.step  # one exchange per step, however often it is asked
            self._agreed_flags = self._agreement.exchange(flags)
        return self._agreed_flags

    def train_step(self, batch: Any, at_least: tuple[int, int, int] | None = None) -> dict[str, float]:
        """One optimizer step on ``batch``; ``at_least``: the dimensions a fixed-shape step pads it to if larger
        (``train.cuda_graphs`` under DDP)."""
        tc = self.cfg.train
        self.loss_module.train()
        if tc.compile:  # bucketed widths: few shapes to compile and tune for
            batch = bucket_batch(batch)
        if self.graphed is not None:  # zeroing, forward and backward: one replay per step (seqlab.train.graphed)
            with loss_chunk_tokens(tc.loss_chunk_tokens), record_function("seqlab.loss_and_backward"):
                loss, extra = self.graphed.forward_backward(batch, self.progress(), at_least)
        else:
            with self._precision(), loss_chunk_tokens(tc.loss_chunk_tokens), record_function("seqlab.loss"):
                loss, extra = self.loss_module(batch, self.progress())
            self.optimizer.zero_grad(set_to_none=True)
            with record_function("seqlab.backward"):
                loss.backward()
        grad_norm = None
        if tc.clip_norm:  # each parameter group on its own (model vs an algorithm's critic)
            norms = [torch.nn.utils.clip_grad_norm_(g["params"], tc.clip_norm) for g in self.optimizer.param_groups]
            grad_norm = norms[0]
        self._apply_optimizer_settings()
        with record_function("seqlab.optimizer"):
            self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        self.algorithm.on_step_end(self.progress())
        out = {"loss": loss.detach(), **extra}
        if grad_norm is not None:
            out["grad_norm"] = grad_norm.detach()
        return out

    def fit(self) -> dict[str, Any]:
        """Train until the budget is spent or early stopping; then score the best checkpoint on test."""
        tc = self.cfg.train
        stopped_early = False
        bar_total = None if tc.max_minutes and not tc.max_steps else self.total_steps  # time-bound: a counter
        bar = tqdm(
            total=bar_total,
            initial=self.step,
            desc=f"train {self.cfg.algorithm.name}",
            disable=not (self.console and tc.progress_bar),
            dynamic_ncols=True,
        )
        window_tokens, window_start = 0, time.perf_counter()
        while self._budget_left() and not stopped_early and not self._stop_requested():
            self.sampler.set_epoch(self.epoch)
            for indices in self.sampler:
                self.profiler.before_step(self.step)
                t0 = time.perf_counter()
                with record_function("seqlab.batch"):
                    batch = collate(self.train_data, indices)
                    if self.device.type == "cuda":  # a pageable copy waits for the GPU's queue: no overlap
                        batch = batch.pin_memory().to(self.device, non_blocking=True)
                    else:
                        batch = batch.to(self.device)
                stats = self.train_step(batch, self._step_dims())
                window_tokens += batch.num_tgt_tokens
                if self.device.type == "cuda" and self.step % tc.log_every_steps == 0:
                    torch.cuda.synchronize()
                self.train_seconds += time.perf_counter() - t0
                bar.update(1)
                if self.step % tc.log_every_steps == 0:
                    self._log_window(stats, window_tokens / max(time.perf_counter() - window_start, 1e-9), bar)
                    window_tokens, window_start = 0, time.perf_counter()
                epoch_done = self.sampler.position >= len(self.sampler)
                if epoch_done:  # bookkeeping here, so a run stopped on an epoch's last batch resumes exactly
                    self.epoch += 1
                if tc.eval_every_steps and self.step % tc.eval_every_steps == 0:
                    stopped_early = self._validate()
                elif epoch_done and not tc.eval_every_steps:
                    stopped_early = self._validate()
                elif tc.save_every_steps and self.step % tc.save_every_steps == 0:
                    self.save_checkpoint("checkpoint_last.pt")
                self.profiler.after_step(self.step)
                if stopped_early or not self._budget_left() or self._stop_requested():
                    break
        self.profiler.after_step(self.step, final=True)
        bar.close()
        self.signals.deferring = False
        if self._stopping:  # Ctrl-C / SIGTERM: keep the step reached, then stop
            self.save_checkpoint("checkpoint_last.pt")
            barrier(self.dist)
            raise TrainingInterrupted(
                self.step, self.run_dir / "checkpoint_last.pt", self.signals.requested or "signal"
            )
        if self._validated_step != self.step:
            self.save_checkpoint("checkpoint_last.pt")
            if not broadcast_flag((self.run_dir / "checkpoint_best.pt").exists(), self.dist, self.device):
                # no evaluation yet (a short run): evaluate once, so that a best checkpoint exists.  It is
                # provisional: checkpoint_last.pt is saved before it, so a continued run proceeds (RNG, best score)
                # exactly as an uninterrupted one, and its first evaluation replaces this best
                stopped_early = self._validate(save_last=False)
        self._warn_if_cut_short()
        return self.finish(stopped_early)

    def _log_window(self, stats: dict[str, Any], tok_per_s: float, bar: tqdm) -> None:
        """The ``train`` record of a logging window (the last step's statistics, lr, throughput), and the progress
        bar's loss, lr and minutes left."""
        tc = self.cfg.train
        vals = {k: float(v) for k, v in stats.items()}
        vals.update(lr=self.scheduler.get_last_lr()[0], tgt_tok_per_s=tok_per_s, epoch=self.epoch)
        if self.graphed is not None:  # train.cuda_graphs: captures so far (a capture slows its window)
            vals["cuda_graph_captures"] = self.graphed.captures
        self.logger.log("train", self.step, vals)
        post = {"loss": f"{vals['loss']:.3f}", "lr": f"{vals['lr']:.2e}"}
        if tc.max_minutes:
            post["min_left"] = f"{max(tc.max_minutes - self.train_seconds / 60, 0):.1f}"
        bar.set_postfix(post)

    def _stop_requested(self) -> bool:
        """Whether a signal asked to stop (under DDP agreed by every rank, :meth:`_agreed`)."""
        self._stopping = self._stopping or self._agreed()[1]
        return self._stopping

    def cut_short(self) -> bool:
        """Whether the wall-clock budget (train.max_minutes) ended training before the step / epoch budget."""
        tc = self.cfg.train
        return bool(
            tc.max_minutes
            and self.train_seconds >= tc.max_minutes * 60
            and self.total_steps
            and self.step - self.algorithm.preparation_steps() < self.total_steps
        )

    def _warn_if_cut_short(self) -> None:
        if self.console and self.cut_short():
            tc = self.cfg.train
            print(
                f"warning: the wall-clock cap train.max_minutes={tc.max_minutes:g} stopped training at step "
                f"{self.step} of {self.total_steps}: the model is likely undertrained (this machine is slower "
                "than the cap assumes); rerun with a larger train.max_minutes to continue",
                file=sys.stderr,
            )

    def finish(self, stopped_early: bool = False) -> dict[str, Any]:
        """Load the best checkpoint (if any) and evaluate it on valid and test with the decode config."""
        results: dict[str, Any] = {
            "steps": self.step,
            "epochs": self.epoch,
            "train_seconds": self.train_seconds,
            "stopped_early": stopped_early,
            "world_size": self.dist.world_size,
            "steps_per_epoch": len(self.sampler),
            "schedule_stages": self.schedule_stages,
            "init": self.init_info,
            "bad_evals": self.bad_evals,
            "budget_steps": self.step - self.algorithm.preparation_steps(),
            "cut_short_by_max_minutes": self.cut_short(),
            "commit": self.code_commit,
            # every algorithm option as this run resolved it, defaults included (seqlab compare checks a resumed
            # comparison's finished runs against it: a changed default is a changed run)
            "algorithm_options": resolved_options(self.cfg.algorithm.name, self.algorithm.options),
        }
        if self.graphed is not None:  # train.cuda_graphs: what was captured, and whether capturing was still on
            g = self.graphed
            results["cuda_graphs"] = {"captures": g.captures, "replays": g.replays, "capturing": g.capture}
        if self.dist.is_main:
            best = self.run_dir / "checkpoint_best.pt"
            if best.exists():
                load_model_weights(self.model, best)
            beam = self.cfg.decode.beam_size
            for split in ("valid", "test"):
                scores, hyps = self.evaluate(split, beam_size=beam)
                results[split] = scores
                (self.run_dir / f"{split}.hyp.txt").write_text("\n".join(hyps) + "\n", encoding="utf-8")
            results["beam_size"] = beam
            signatures = {
                s: sacrebleu_signatures(self.task.metrics, getattr(self.task, s).references()[1])
                for s in ("valid", "test")
            }
            if any(signatures.values()):  # how BLEU / chrF were computed (sacrebleu's signature)
                results["signatures"] = signatures
            (self.run_dir / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
            final = {f"{s}_{k}": v for s in ("valid", "test") for k, v in results[s].items()}
            self.logger.log("final", self.step, final)
        self.logger.close()
        barrier(self.dist)
        return results

    def close(self) -> None:
        """Release the DDP wrapper (its reducer holds the process group), then leave the group.

        Freeing the reducer first means no gloo worker thread outlives the group into interpreter shutdown,
        where it can abort the process after a run that otherwise succeeded.
        """
        if isinstance(self.loss_module, DistributedDataParallel):
            self.loss_module = self.loss_module.module
            gc.collect()
        cleanup(self.dist)


def train(cfg: Config, console: bool = True) -> dict[str, Any]:
    """Train ``cfg`` (resuming its run); a finished run is not retrained: its stored results come back, with
    ``already_finished`` saying how to continue it.  Ctrl-C / SIGTERM save a checkpoint and raise
    :class:`~seqlab.train.runstate.TrainingInterrupted`."""
    check_config(cfg)
    done = finished_run(cfg)
    if done is not None:
        return {**done.results, "already_finished": done.message()}
    trainer = Trainer(cfg, console=console)
    try:
        with trainer.signals:
            trainer.signals.deferring = True
            return trainer.fit()
    finally:
        trainer.close()
