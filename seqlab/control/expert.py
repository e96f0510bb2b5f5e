"""PPO experts on the true reward (stable-baselines3), with checkpoint and resume; demonstration rollouts.

Run directory layout::

    <run_dir>/checkpoint/ppo.zip, vecnormalize.pkl, state.json   the latest checkpoint (resume point)
    <run_dir>/expert.zip, vecnormalize.pkl                        the final expert
    <run_dir>/expert.json                                         its evaluation (true return) and config
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from seqlab.control.config import ControlConfig, ExpertConfig
from seqlab.control.demos import DemoDataset, rollout
from seqlab.control.envs import env_id, make_env
from seqlab.control.evaluate import PPOActor, evaluate, summary


def _progress(total: int, initial: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, dynamic_ncols=True)


def make_vec_env(name: str, n_envs: int, seed: int, max_episode_steps: int | None = None, wrap: Any = None) -> Any:
    """A DummyVecEnv of ``n_envs`` Monitor-wrapped environments (``wrap(env, rank)`` applied first)."""
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    def factory(rank: int):
        def _make():
            env = make_env(name, max_episode_steps, seed=seed + rank)
            if wrap is not None:
                env = wrap(env, rank)
            return Monitor(env)

        return _make

    venv = DummyVecEnv([factory(r) for r in range(n_envs)])
    venv.seed(seed)
    return venv


def make_ppo(venv: Any, c: ExpertConfig | Any, seed: int) -> Any:
    """Stable-Baselines3 PPO with an MLP (tanh) policy on the CPU from a config's PPO settings (``n_steps``,
    ``batch_size``, ``n_epochs``, ``lr``, ``gamma``, ``gae_lambda``, ``clip_range``, ``ent_coef``, ``net_arch`` and,
    where the config has it, ``log_std_init``): the expert's and GAIL's policy."""
    from stable_baselines3 import PPO

    policy_kwargs: dict[str, Any] = dict(net_arch=list(c.net_arch), activation_fn=nn.Tanh)
    if getattr(c, "log_std_init", None) is not None:
        policy_kwargs["log_std_init"] = c.log_std_init
    return PPO(
        "MlpPolicy",
        venv,
        n_steps=c.n_steps,
        batch_size=c.batch_size,
        n_epochs=c.n_epochs,
        learning_rate=c.lr,
        gamma=c.gamma,
        gae_lambda=c.gae_lambda,
        clip_range=c.clip_range,
        ent_coef=c.ent_coef,
        policy_kwargs=policy_kwargs,
        seed=seed,
        device="cpu",
        verbose=0,
    )


def train_expert(cfg: ControlConfig, run_dir: str | Path) -> dict[str, Any]:
    """Train (or resume) a PPO expert until ``expert.total_steps``; evaluate and save it."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecNormalize

    run_dir = Path(run_dir)
    ckpt = run_dir / "checkpoint"
    ckpt.mkdir(parents=True, exist_ok=True)
    e = cfg.expert
    torch.manual_seed(cfg.seed)
    venv = make_vec_env(cfg.env, e.n_envs, cfg.seed, cfg.max_episode_steps)
    curve: list[dict[str, float]] = []
    wall = 0.0
    if (ckpt / "ppo.zip").exists():
        venv = VecNormalize.load(str(ckpt / "vecnormalize.pkl"), venv)
        model = PPO.load(str(ckpt / "ppo.zip"), env=venv, device="cpu")
        state = json.loads((ckpt / "state.json").read_text())
        curve, wall = state.get("curve", []), state.get("wall_s", 0.0)
    else:
        venv = VecNormalize(venv, norm_obs=True, norm_reward=True, gamma=e.gamma)
        model = make_ppo(venv, e, cfg.seed)
    bar = _progress(e.total_steps, model.num_timesteps, f"expert {env_id(cfg.env)}", cfg.progress_bar)
    while model.num_timesteps < e.total_steps:
        t0 = time.time()
        chunk = min(e.checkpoint_every, e.total_steps - model.num_timesteps)
        before = model.num_timesteps
        model.learn(chunk, reset_num_timesteps=False)
        wall += time.time() - t0
        venv.training = False
        actor = PPOActor.from_vecnormalize(model.policy, venv)
        rets = evaluate(cfg.env, actor, 3, seed=200_000, max_episode_steps=cfg.max_episode_steps)
        venv.training = True
        curve.append({"steps": model.num_timesteps, "return": float(rets.mean()), "wall_s": wall})
        model.save(str(ckpt / "ppo.zip"))
        venv.save(str(ckpt / "vecnormalize.pkl"))
        (ckpt / "state.json").write_text(json.dumps({"curve": curve, "wall_s": wall}))
        if not cfg.progress_bar:
            print(json.dumps(curve[-1]), flush=True)
        bar.update(model.num_timesteps - before)
        bar.set_postfix(ret=f"{rets.mean():.0f}")
    bar.close()
    venv.training = False
    model.save(str(run_dir / "expert.zip"))
    venv.save(str(run_dir / "vecnormalize.pkl"))
    actor = PPOActor.from_vecnormalize(model.policy, venv)
    rets = evaluate(cfg.env, actor, e.eval_episodes, max_episode_steps=cfg.max_episode_steps)
    result = {
        "env_id": env_id(cfg.env),
        "steps": model.num_timesteps,
        **summary(rets),
        "returns": rets.tolist(),
        "curve": curve,
        "wall_s": wall,
        "config": cfg.expert.__dict__,
        "seed": cfg.seed,
    }
    (run_dir / "expert.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def load_expert(run_dir: str | Path, deterministic: bool = True) -> PPOActor:
    """The saved expert (``expert.zip`` + ``vecnormalize.pkl``) as a raw-observation actor."""
    if not (Path(run_dir) / "expert.zip").exists():
        raise FileNotFoundError(f"no expert in {run_dir} (run `seqlab control expert` first)")
    return PPOActor.load(run_dir, "expert.zip", deterministic)


def make_demos(cfg: ControlConfig, expert_dir: str | Path, out: str | Path) -> tuple[Path, DemoDataset]:
    """Roll out the expert for ``demos.n_trajectories`` episodes and save the dataset (format: demos.py)."""
    expert_dir = Path(expert_dir)
    actor = load_expert(expert_dir, cfg.demos.deterministic)
    info = json.loads((expert_dir / "expert.json").read_text()) if (expert_dir / "expert.json").exists() else {}
    env = make_env(cfg.env, cfg.max_episode_steps)
    ds = rollout(
        env,
        lambda o: actor(o)[0],
        cfg.demos.n_trajectories,
        seed=cfg.demos.seed,
        meta={
            "expert": str(expert_dir),
            "deterministic": cfg.demos.deterministic,
            "expert_eval_return_mean": info.get("return_mean"),
            "expert_eval_return_std": info.get("return_std"),
            "expert_steps": info.get("steps"),
        },
    )
    ds.meta["expert_return_mean"] = float(np.mean(ds.returns))
    ds.meta["expert_return_std"] = float(np.std(ds.returns))
    path = ds.save(out)
    return path, ds
