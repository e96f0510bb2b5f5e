"""``seqlab control expert | demos | train | eval``: the imitation-learning pipeline on MuJoCo.

Every flag is shorthand for a config key (``--env`` -> ``env``, ``--steps`` -> ``expert.total_steps`` or
``gail.total_steps``, ...); any other key is set with trailing ``section.key=value`` overrides.
gymnasium / stable-baselines3 are imported only when a sub-command runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

METHODS = ("gail", "gail_interp", "bc")


def default_dir(env: str, stage: str) -> Path:
    from seqlab.control.envs import short_name

    return Path("runs") / "control" / short_name(env) / stage


def run_name(method: str, n_demos: int, seed: int) -> str:
    return f"{method}_{n_demos}demos_seed{seed}"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config (configs/control/*.yaml)")
    p.add_argument("--env", help="hopper | halfcheetah | walker2d | a gymnasium id")
    p.add_argument("--seed", type=int)
    p.add_argument("--run-dir", help="output directory (default runs/control/<env>/...)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. gail.d_lr=1e-4")


def add_control_parser(subparsers: Any) -> None:
    """Register ``control`` with its sub-commands on the main CLI's subparsers."""
    p = subparsers.add_parser("control", help="imitation learning on MuJoCo: expert, demos, GAIL (+ interpolation)")
    sub = p.add_subparsers(dest="control_command", required=True)

    q = sub.add_parser("expert", help="train a PPO expert on the true reward (resumes from its checkpoint)")
    _common(q)
    q.add_argument("--steps", type=int, help="expert.total_steps")

    q = sub.add_parser("demos", help="roll out the expert and save a demonstration dataset (.npz)")
    _common(q)
    q.add_argument("--expert", help="expert run directory (default runs/control/<env>/expert)")
    q.add_argument("--out", help="output .npz (default runs/control/<env>/demos.npz)")
    q.add_argument("-n", "--n-trajectories", type=int, help="demos.n_trajectories")

    q = sub.add_parser("train", help="train GAIL, GAIL + interpolation or behaviour cloning")
    _common(q)
    q.add_argument("--method", choices=METHODS, default=None, help="default: gail.method of the config")
    q.add_argument("--demos", help="demonstration .npz (default runs/control/<env>/demos.npz)")
    q.add_argument("--n-demos", type=int, help="gail.n_demos")
    q.add_argument("--steps", type=int, help="gail.total_steps")

    q = sub.add_parser("eval", help="evaluate a trained policy (or the random policy) on the true reward")
    _common(q)
    q.add_argument("--method", choices=(*METHODS, "random", "expert"), required=True)
    q.add_argument("--episodes", type=int, default=10)
    q.add_argument("--stochastic", action="store_true", help="sample actions instead of the mean")
    p.set_defaults(func=run_control)


def _config(args: argparse.Namespace, extra: list[str]) -> Any:
    from seqlab.control.config import load_control_config

    overrides = []
    if args.env:
        overrides.append(f"env={args.env}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.no_progress:
        overrides.append("progress_bar=false")
    return load_control_config(args.config, overrides + extra + list(args.overrides))


def run_control(args: argparse.Namespace) -> int:
    cmd = args.control_command
    if cmd == "expert":
        from seqlab.control.expert import train_expert

        cfg = _config(args, [f"expert.total_steps={args.steps}"] if args.steps else [])
        run_dir = Path(args.run_dir or cfg.run_dir or default_dir(cfg.env, "expert"))
        res = train_expert(cfg, run_dir)
        print(
            f"expert {res['env_id']}: {res['steps']} steps, return {res['return_mean']:.1f} "
            f"± {res['return_std']:.1f} over {res['episodes']} episodes -> {run_dir}"
        )
        return 0
    if cmd == "demos":
        from seqlab.control.expert import make_demos

        cfg = _config(args, [f"demos.n_trajectories={args.n_trajectories}"] if args.n_trajectories else [])
        expert = Path(args.expert or default_dir(cfg.env, "expert"))
        out = Path(args.out or default_dir(cfg.env, "demos.npz"))
        path, ds = make_demos(cfg, expert, out)
        print(
            f"{ds.n_trajectories} trajectories ({len(ds.obs)} steps), expert return "
            f"{ds.returns.mean():.1f} ± {ds.returns.std():.1f} -> {path}"
        )
        return 0
    if cmd == "train":
        extra = []
        if args.method and args.method != "bc":
            extra.append(f"gail.method={args.method}")
        if args.n_demos:
            extra.append(f"gail.n_demos={args.n_demos}")
        if args.steps:
            extra.append(f"gail.total_steps={args.steps}")
        cfg = _config(args, extra)
        method = args.method or cfg.gail.method
        demos = Path(args.demos or default_dir(cfg.env, "demos.npz"))
        run_dir = Path(
            args.run_dir or cfg.run_dir or default_dir(cfg.env, run_name(method, cfg.gail.n_demos, cfg.seed))
        )
        if method == "bc":
            from seqlab.control.bc import train_bc_run

            res = train_bc_run(cfg, demos, run_dir)
        else:
            from seqlab.control.gail import train_gail

            res = train_gail(cfg, demos, run_dir)
        print(
            f"{method} on {cfg.env} with {cfg.gail.n_demos} demonstrations (seed {cfg.seed}): return "
            f"{res['return_mean']:.1f} ± {res['return_std']:.1f} -> {run_dir}"
        )
        return 0
    if cmd == "eval":
        cfg = _config(args, [])
        res = evaluate_run(cfg, args.method, args.run_dir, args.episodes, not args.stochastic)
        print(json.dumps(res, indent=2))
        return 0
    raise ValueError(f"unknown control command {cmd!r}")


def evaluate_run(cfg: Any, method: str, run_dir: str | None, episodes: int, deterministic: bool = True) -> dict:
    """Evaluate a saved policy of ``method`` (or the random policy) for ``episodes`` episodes."""
    from seqlab.control.envs import make_env
    from seqlab.control.evaluate import RandomActor, evaluate, summary

    if method == "random":
        actor = RandomActor(make_env(cfg.env).action_space, cfg.seed)
    elif method == "expert":
        from seqlab.control.expert import load_expert

        actor = load_expert(run_dir or default_dir(cfg.env, "expert"), deterministic)
    elif method == "bc":
        from seqlab.control.bc import load_bc

        actor = load_bc(run_dir or default_dir(cfg.env, run_name("bc", cfg.gail.n_demos, cfg.seed)))
    else:
        from seqlab.control.gail import load_policy

        actor = load_policy(
            run_dir or default_dir(cfg.env, run_name(method, cfg.gail.n_demos, cfg.seed)), deterministic
        )
    rets = evaluate(cfg.env, actor, episodes, max_episode_steps=cfg.max_episode_steps)
    return {"env": cfg.env, "method": method, **summary(rets), "returns": rets.tolist()}
