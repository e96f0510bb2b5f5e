"""seqlab from Python: :func:`train`, :func:`load` (a checkpoint that translates, scores and samples) and
:func:`compare`, the library side of ``seqlab train``, ``seqlab translate`` and ``seqlab compare``.

    import seqlab

    results = seqlab.train("configs/multi30k_transformer.yaml", overrides={"train.max_steps": 2000},
                           reward=my_chrf)                     # fn(hyps, refs, sources, **fields) -> list[float]
    model = seqlab.load(results["checkpoint"])
    model.translate(["Ein Mann fährt Fahrrad ."], beam_size=5)

The same checks run as on the command line: a misspelt key, option or name stops with one line before anything is
loaded or written (:class:`seqlab.config.ConfigError`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seqlab.config import Config, ConfigError, apply_overrides, config_from_dict, read_yaml_mapping, set_dotted

__all__ = ["Seq2Seq", "compare", "load", "train"]

ConfigLike = str | Path | Config | Mapping[str, Any] | None
Overrides = Sequence[str] | Mapping[str, Any] | None
RewardLike = str | Callable[..., Sequence[float]] | None


def _config_data(config: ConfigLike) -> tuple[dict[str, Any], str]:
    """A config's nested mapping and its name in messages."""
    if config is None:
        return {}, "config"
    if isinstance(config, Config):
        return config.to_dict(), "config"
    if isinstance(config, Mapping):
        return copy.deepcopy(dict(config)), "config"
    return read_yaml_mapping(config), str(config)


def build_config(config: ConfigLike = None, overrides: Overrides = None) -> Config:
    """The checked :class:`~seqlab.config.Config` of ``config`` (a YAML path, a Config, a nested mapping or None
    for the defaults) with ``overrides``: ``["train.lr=1e-4", ...]`` as on the command line, or a mapping
    ``{"train.lr": 1e-4}`` whose values are taken as they are."""
    from seqlab.catalog import check_config

    data, where = _config_data(config)
    origins: dict[str, str] = {}
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            set_dotted(data, str(key).split("."), copy.deepcopy(value), f"override {key!r}")
            origins[str(key)] = f"override {key!r}"
    elif overrides:
        if isinstance(overrides, str):
            raise ConfigError(f"overrides must be a list of key=value strings or a mapping, got {overrides!r}")
        apply_overrides(data, list(overrides), origins)
    cfg = config_from_dict(data, origins, where)
    check_config(cfg)
    return cfg


def _reward_option(reward: RewardLike, for_subprocess: bool = False) -> str | None:
    """``algorithm.options.reward`` for ``reward``: a name or ``module:function`` as it is; a callable registered
    in this process (``for_subprocess``: named by the ``module:function`` it is importable as)."""
    if reward is None or isinstance(reward, str):
        return reward
    if not callable(reward):
        raise TypeError(f"reward must be a name, module:function or a callable, got {reward!r}")
    if for_subprocess:
        return importable_name(reward)
    from seqlab.rewards import add_text_reward

    return add_text_reward(reward)


def importable_name(fn: Callable[..., Any]) -> str:
    """``module:qualname`` of ``fn`` when another process can import it by that name, else a TypeError."""
    from seqlab.rewards.text import import_reward

    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    spec = f"{module}:{qualname}"
    ok = bool(module) and module != "__main__" and "<" not in qualname
    if ok:
        try:
            ok = import_reward(spec) is fn
        except ValueError:
            ok = False
    if not ok:
        raise TypeError(
            f"seqlab.compare trains in subprocesses, which import the reward by name: {fn!r} is not "
            f"importable as {spec}; define it at the top level of a module on the PYTHONPATH (or "
            "pass 'module:function')"
        )
    return spec


def train(
    config: ConfigLike = None,
    overrides: Overrides = None,
    reward: RewardLike = None,
    console: bool = False,
    plugins: Sequence[str] = (),
) -> dict[str, Any]:
    """Train a config (resuming its run directory, as ``seqlab train``) and return its results: the valid / test
    scores of the best checkpoint, steps, and ``run_dir`` / ``checkpoint`` (the best checkpoint's path).

    ``reward``: the algorithm's reward (``algorithm.options.reward``): a registered name, ``module:function``, or a
    callable ``fn(hyps, refs, sources, **fields) -> list[float]`` on decoded text (:mod:`seqlab.rewards.text`),
    registered in this process only (the run's config.yaml names it ``python:<module>.<qualname>``; training in
    other processes, such as torchrun workers or a resume from a new interpreter, needs ``module:function``).
    ``plugins``: modules that register components (as ``seqlab --plugin``).  ``console``: progress bar and
    messages."""
    from seqlab.train.trainer import train as run_training

    if plugins:
        from seqlab.registry import add_plugins

        add_plugins(list(plugins))
    name = _reward_option(reward)
    extra: dict[str, Any] = {} if name is None else {"algorithm.options.reward": name}
    if isinstance(overrides, Mapping) or not overrides:
        cfg = build_config(config, {**dict(overrides or {}), **extra})
    else:
        cfg = build_config(config, [*overrides, *(f"{k}={v}" for k, v in extra.items())])
    results = run_training(cfg, console=console)
    run_dir = Path(cfg.run_dir)
    return {**results, "run_dir": str(run_dir), "checkpoint": str(run_dir / "checkpoint_best.pt")}


@dataclass
class Seq2Seq:
    """A trained checkpoint ready to use: :meth:`translate`, :meth:`score`, :meth:`sample`.  ``config`` is its
    run's config (its ``decode`` section gives the defaults), ``model`` the network in eval mode."""

    config: Config
    model: Any
    src_tokenizer: Any
    tgt_tokenizer: Any
    device: torch.device

    def _source_ids(self, sources: Sequence[str]) -> list[list[int]]:
        from seqlab.train.evaluate import encode_lines

        if isinstance(sources, str):
            raise TypeError("give a list of sentences (a single string would be read as a list of characters)")
        return encode_lines(self.src_tokenizer, sources, self.config.decode.max_len)

    def translate(
        self, sources: Sequence[str], beam_size: int | None = None, batch_size: int | None = None
    ) -> list[str]:
        """The decoded translation of every sentence, as ``seqlab translate`` writes it (beam search with the
        config's length penalty; ``beam_size`` 1: greedy; default: the config's ``decode.beam_size``)."""
        from seqlab.train.evaluate import decode_ids

        hyps = decode_ids(
            self.model,
            self._source_ids(sources),
            self.config.decode,
            self.device,
            beam_size=beam_size,
            batch_size=batch_size,
        )
        return [self.tgt_tokenizer.decode(h) for h in hyps]

    @torch.no_grad()
    def score(self, sources: Sequence[str], targets: Sequence[str], normalize: bool = False) -> list[float]:
        """log p(target | source) of every pair (natural log, the end-of-sequence token included);
        ``normalize``: divided by the number of target tokens scored."""
        from seqlab.train.evaluate import encode_lines, pad_batch

        if len(sources) != len(targets):
            raise ValueError(f"{len(sources)} sources but {len(targets)} targets")
        src_ids = self._source_ids(sources)
        tgt_ids = encode_lines(self.tgt_tokenizer, targets, self.config.decode.max_len)
        out: list[float] = []
        bs = self.config.decode.batch_size
        for i in range(0, len(src_ids), bs):
            src, tgt = pad_batch(src_ids[i : i + bs], self.device), pad_batch(tgt_ids[i : i + bs], self.device)
            token_lp = self.model.score(src, tgt).float()
            total = token_lp.sum(1)
            if normalize:
                total = total / torch.tensor([len(t) for t in tgt_ids[i : i + bs]], device=total.device)
            out.extend(total.tolist())
        return out

    @torch.no_grad()
    def sample(self, sources: Sequence[str], num_samples: int = 1, temperature: float = 1.0) -> list[list[str]]:
        """``num_samples`` ancestral samples of p_θ(· | source) per sentence (at ``temperature``)."""
        from seqlab.decoding import sample
        from seqlab.train.evaluate import pad_batch, strip_ids

        d = self.config.decode
        src_ids = self._source_ids(sources)
        out: list[list[str]] = []
        for i in range(0, len(src_ids), d.batch_size):
            src = pad_batch(src_ids[i : i + d.batch_size], self.device)
            hyp = sample(
                self.model,
                src,
                num_samples=num_samples,
                temperature=temperature,
                max_len_a=d.max_len_a,
                max_len_b=d.max_len_b,
                max_len=d.max_len,
            )
            rows = [self.tgt_tokenizer.decode(strip_ids(r)) for r in hyp.token_rows()]
            out.extend(rows[j : j + num_samples] for j in range(0, len(rows), num_samples))
        return out


def load(checkpoint: str | Path, device: str | torch.device = "auto") -> Seq2Seq:
    """A seqlab checkpoint (``checkpoint_best.pt`` of a run) with its config and tokenizers, in eval mode."""
    from seqlab.inference import load_checkpoint_model

    loaded = load_checkpoint_model(checkpoint, device)
    return Seq2Seq(loaded.config, loaded.model, loaded.src_tokenizer, loaded.tgt_tokenizer, loaded.device)


def compare(
    config: ConfigLike,
    algorithms: Sequence[str],
    out: str | Path,
    seeds: Sequence[int] = (1,),
    budget_steps: int | None = None,
    pretrain_steps: int = 0,
    overrides: Overrides = None,
    reward: RewardLike = None,
    gpus: str = "none",
    report: bool = True,
    echo: Callable[[str], None] = print,
    **spec: Any,
) -> dict[str, Any]:
    """``seqlab compare``: every algorithm x seed from one shared MLE checkpoint with the same budget, then the
    report (``OUT/report``); returns the comparison's summary.  Runs are subprocesses, so ``reward`` must be a
    name or ``module:function`` (a callable is passed by the ``module:function`` it is importable as).  Further
    keywords are fields of :class:`seqlab.compare.runner.CompareSpec` (``budget_minutes``, ``init_from``,
    ``algorithm_overrides``, ``variants``, ``extra_tests``, ...)."""
    from seqlab.compare.runner import CompareSpec, run_compare

    out = Path(out)
    if isinstance(config, (str, Path)):
        path = str(config)
    else:  # runs read the task config from a file: write this one next to the comparison
        from seqlab.config import save_config

        out.mkdir(parents=True, exist_ok=True)
        path = str(out / "input_config.yaml")
        save_config(build_config(config), path)
    if isinstance(overrides, Mapping):  # JSON is YAML: the values come back as they are
        overrides = [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in overrides.items()]
    elif isinstance(overrides, str):
        raise ConfigError(f"overrides must be a list of key=value strings or a mapping, got {overrides!r}")
    if isinstance(algorithms, str):
        algorithms = [a.strip() for a in algorithms.split(",") if a.strip()]
    if budget_steps is None and spec.get("budget_minutes") is None:
        raise ConfigError("seqlab.compare: give budget_steps or budget_minutes (the same budget for every run)")
    cspec = CompareSpec(
        config=path,
        out=str(out),
        algorithms=list(algorithms),
        seeds=[int(s) for s in seeds],
        budget_steps=budget_steps,
        pretrain_steps=pretrain_steps,
        overrides=list(overrides or []),
        reward=_reward_option(reward, for_subprocess=True),
        gpus=gpus,
        **spec,
    )
    return run_compare(cspec, echo=echo, report=report)
