"""GAIL, and GAIL with the interpolation schedule, on top of stable-baselines3's PPO.

One iteration (``n_envs * n_steps`` >= 2,048 policy state-action pairs):

1. set the maximum demonstration-prefix length m from the schedule (``gail_interp``; m = 0 for ``gail``)
   on every environment's :class:`~seqlab.control.envs.DemoPrefixReset`;
2. collect a rollout with PPO's policy; the reward of each step is the discriminator's (computed by
   :class:`DiscriminatorReward`, below VecNormalize, on the raw observation and the clipped action);
   episodes that reset during the rollout start after a demonstration prefix;
3. update the discriminator on this rollout's pairs against the sampled demonstration pairs;
4. PPO's update on the rollout (SB3's ``train``);
5. every ``eval_every`` iterations evaluate on the true reward from the environment's own start states
   (the learning curve), every ``checkpoint_every`` save a checkpoint that ``train_gail`` resumes from.

Demonstration-prefix steps (the documented choice, config ``gail.prefix_bc_coef``): the prefix is taken
from the demonstration, not re-simulated, so its steps are in neither the policy's nor the
discriminator's batch by default (0.0): the prefix only shapes the start-state distribution and the
policy learns from the states after it. With ``prefix_bc_coef`` > 0, the demonstration pairs of the
prefixes used in an iteration also add a maximum-likelihood term (weight ``prefix_bc_coef``) to the
policy after PPO's update: the ERPO reading, in which tokens taken from the data get MLE's coefficient.
They never enter the discriminator as policy samples.

Only policy steps count toward ``total_steps``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from seqlab.control.config import ControlConfig, GailConfig
from seqlab.control.demos import DemoDataset, reset_states
from seqlab.control.discriminator import Discriminator, DiscriminatorTrainer
from seqlab.control.envs import DemoPrefixReset, env_id
from seqlab.control.evaluate import PPOActor, evaluate, summary
from seqlab.control.expert import make_ppo
from seqlab.erpo.schedules import Constant, Linear, Schedule, make_schedule


def iterations(g: GailConfig) -> int:
    return max(1, g.total_steps // (g.n_envs * g.n_steps))


def prefix_schedule(g: GailConfig, n_iters: int) -> Schedule:
    """Maximum prefix length per iteration (``unit='step'`` = iteration). Plain GAIL: constant 0.

    Default: linear from ``prefix_start`` to 0 over ``prefix_anneal_fraction`` of the iterations, then 0
    (plain GAIL for the rest of training). ``prefix_schedule`` takes any spec of seqlab.erpo.schedules.
    """
    if g.method != "gail_interp":
        return Constant(0)
    if g.prefix_schedule is not None:
        return make_schedule(g.prefix_schedule)
    return Linear(start=float(g.prefix_start), end=0.0, duration=max(g.prefix_anneal_fraction * n_iters, 1e-9))


def prefix_at(schedule: Schedule, iteration: int) -> int:
    """The schedule's value at an iteration as a non-negative whole number of steps."""
    return max(int(round(float(schedule.value(step=iteration, epoch=iteration)))), 0)


def _vec_env_wrapper_base() -> type:
    from stable_baselines3.common.vec_env import VecEnvWrapper

    return VecEnvWrapper


class DiscriminatorReward(_vec_env_wrapper_base()):
    """VecEnv wrapper: the reward of step (s_t, a_t) is the discriminator's; the pairs are kept.

    ``info["true_reward"]`` keeps the environment's reward. ``pop_pairs()`` returns and clears the raw
    (observation, action) pairs seen since the last call (one rollout).
    """

    def __init__(self, venv: Any, disc: Discriminator):
        super().__init__(venv)
        self.disc = disc
        self._obs: np.ndarray | None = None
        self._actions: np.ndarray | None = None
        self._pairs: list[tuple[np.ndarray, np.ndarray]] = []

    def reset(self) -> np.ndarray:
        obs = self.venv.reset()
        self._obs = np.array(obs)
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.array(actions, dtype=np.float32)
        self.venv.step_async(actions)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
        obs, true_rewards, dones, infos = self.venv.step_wait()
        rewards = self.disc.reward(self._obs, self._actions).astype(np.float32)
        for i, info in enumerate(infos):
            info["true_reward"] = float(true_rewards[i])
        self._pairs.append((self._obs.astype(np.float32), self._actions))
        self._obs = np.array(obs)
        return obs, rewards, dones, infos

    def pop_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        obs = np.concatenate([o for o, _ in self._pairs])
        act = np.concatenate([a for _, a in self._pairs])
        self._pairs = []
        return obs, act


def _prefix_bc_step(
    model: Any, vecnorm: Any, wrappers: list[DemoPrefixReset], coef: float, rng: np.random.Generator, batch: int = 256
) -> float | None:
    """A max-likelihood step on the demonstration pairs of this iteration's prefixes."""
    obs, act = [], []
    for w in wrappers:
        for j, i in w.prefix_log:
            if i > 0:
                obs.append(w.states.obs[j][:i])
                act.append(w.states.actions[j][:i])
        w.prefix_log.clear()
    if not obs or coef <= 0:
        return None
    o, a = np.concatenate(obs), np.concatenate(act)
    idx = rng.choice(len(o), size=min(batch, len(o)), replace=False)
    o_n = vecnorm.normalize_obs(o[idx]) if vecnorm is not None else o[idx]
    policy = model.policy
    policy.set_training_mode(True)
    _, log_prob, _ = policy.evaluate_actions(
        torch.as_tensor(o_n, dtype=torch.float32), torch.as_tensor(a[idx], dtype=torch.float32)
    )
    loss = -coef * log_prob.mean()
    policy.optimizer.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(policy.parameters(), model.max_grad_norm)
    policy.optimizer.step()
    policy.set_training_mode(False)
    return float(loss.detach())


class _GailRun:
    """One GAIL / GAIL + interpolation run: demonstrations, discriminator, PPO behind the prefix-reset and
    discriminator-reward wrappers, the learning curve and the training clock; resumes from ``run_dir/checkpoint``."""

    def __init__(self, cfg: ControlConfig, demos: str | Path | DemoDataset, run_dir: str | Path):
        from seqlab.control.expert import make_vec_env

        g = self.g = cfg.gail
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.ckpt = self.run_dir / "checkpoint"
        self.ckpt.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        ds = demos if isinstance(demos, DemoDataset) else DemoDataset.load(demos)
        self.demos = ds.subset(g.n_demos)
        rng = np.random.default_rng(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.exp_obs, exp_act, idx = self.demos.sample_pairs(g.pairs_per_trajectory, rng, g.subsample)
        self.states = reset_states(self.demos, idx if g.reset_states == "subsampled" else None)
        disc = Discriminator.for_demos(self.exp_obs, exp_act.shape[1], tuple(g.d_hidden), g.reward)
        self.trainer = DiscriminatorTrainer(disc, self.exp_obs, exp_act, g.d_lr, g.d_batch, g.d_entcoeff, cfg.seed)
        self.wrappers: list[DemoPrefixReset] = []
        self.venv = DiscriminatorReward(
            make_vec_env(cfg.env, g.n_envs, cfg.seed, cfg.max_episode_steps, self._wrap), disc
        )
        self.n_iters = iterations(g)
        self.per_iter = g.n_envs * g.n_steps
        self.schedule = prefix_schedule(g, self.n_iters)
        self.curve: list[dict[str, Any]] = []
        self.wall, self.start_iter = 0.0, 0
        self.bc_rng = np.random.default_rng(cfg.seed + 1)
        self._load_or_create_policy()

    def _wrap(self, env: Any, rank: int) -> Any:
        g = self.g
        w = DemoPrefixReset(
            env, self.states if g.method == "gail_interp" else None, g.prefix_sampling, seed=self.cfg.seed * 1000 + rank
        )
        self.wrappers.append(w)
        return w

    def _load_or_create_policy(self) -> None:
        """PPO and VecNormalize from the checkpoint (with the discriminator, RNGs, curve and clock), or fresh."""
        from stable_baselines3 import PPO
        from stable_baselines3.common.vec_env import VecNormalize

        g, ckpt = self.g, self.ckpt
        if (ckpt / "ppo.zip").exists():
            self.vecnorm = VecNormalize.load(str(ckpt / "vecnormalize.pkl"), self.venv)
            self.model = PPO.load(str(ckpt / "ppo.zip"), env=self.vecnorm, device="cpu")
            state = torch.load(ckpt / "state.pt", weights_only=False)
            self.trainer.load_state_dict(state["trainer"])
            for w, s in zip(self.wrappers, state["prefix_rng"], strict=True):
                w.rng.bit_generator.state = s
            self.bc_rng.bit_generator.state = state["bc_rng"]
            self.curve, self.wall, self.start_iter = state["curve"], state["wall_s"], state["iteration"]
        else:
            self.vecnorm = VecNormalize(
                self.venv, norm_obs=g.normalize_obs, norm_reward=g.normalize_reward, gamma=g.gamma
            )
            self.model = make_ppo(self.vecnorm, g, self.cfg.seed)

    def save_checkpoint(self, iteration: int) -> None:
        self.model.save(str(self.ckpt / "ppo.zip"))
        self.vecnorm.save(str(self.ckpt / "vecnormalize.pkl"))
        torch.save(
            {
                "trainer": self.trainer.state_dict(),
                "prefix_rng": [w.rng.bit_generator.state for w in self.wrappers],
                "bc_rng": self.bc_rng.bit_generator.state,
                "curve": self.curve,
                "wall_s": self.wall,
                "iteration": iteration,
            },
            self.ckpt / "state.pt",
        )

    def evaluate(self, n: int, seed: int) -> np.ndarray:
        """Returns of ``n`` episodes on the true reward from the environment's own start states."""
        actor = PPOActor.from_vecnormalize(self.model.policy, self.vecnorm, self.g.deterministic_eval)
        return evaluate(self.cfg.env, actor, n, seed=seed, max_episode_steps=self.cfg.max_episode_steps)

    def train(self, log: Any = None) -> None:
        """The iterations left (none when the checkpoint is at the budget), with evaluations and checkpoints."""
        from seqlab.control.expert import _progress

        g, cfg, model = self.g, self.cfg, self.model
        if self.start_iter >= self.n_iters:
            return
        fresh = self.start_iter == 0 and model.num_timesteps == 0
        remaining = (self.n_iters - self.start_iter) * self.per_iter
        _, callback = model._setup_learn(remaining, None, reset_num_timesteps=fresh)
        callback.on_training_start(locals(), globals())
        if self.start_iter == 0:  # the untrained policy, for the learning curve
            rets = self.evaluate(g.eval_episodes, 300_000)
            self.curve.append({"iteration": 0, "steps": 0, "return": float(rets.mean()), "prefix_max": None})
        bar = _progress(
            self.n_iters,
            self.start_iter,
            f"{g.method} {env_id(cfg.env)} {g.n_demos} demos s{cfg.seed}",
            cfg.progress_bar,
        )
        for it in range(self.start_iter, self.n_iters):
            t0 = time.time()
            m, d_stats, bc_loss = self._iteration(it, callback)
            self.wall += time.time() - t0
            done = it + 1
            if done % g.eval_every == 0 or done == self.n_iters:
                self._record(done, m, d_stats, bc_loss, bar, log)
            if done % g.checkpoint_every == 0 or done == self.n_iters:
                self.save_checkpoint(done)
            bar.update(1)
        bar.close()

    def _iteration(self, it: int, callback: Any) -> tuple[int, dict[str, float], float | None]:
        """Steps 1-4 of the module docstring: (prefix length m, discriminator statistics, prefix BC loss)."""
        g, model = self.g, self.model
        m = prefix_at(self.schedule, it)
        for w in self.wrappers:
            w.set_max_prefix(m)
        model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=g.n_steps)
        model._update_current_progress_remaining(model.num_timesteps, model._total_timesteps)
        pol_obs, pol_act = self.venv.pop_pairs()
        d_stats = self.trainer.update(pol_obs, pol_act, g.d_steps)
        model.train()
        bc_loss = (
            _prefix_bc_step(model, self.vecnorm, self.wrappers, g.prefix_bc_coef, self.bc_rng)
            if g.prefix_bc_coef > 0
            else None
        )
        if g.prefix_bc_coef <= 0:
            for w in self.wrappers:
                w.prefix_log.clear()
        return m, d_stats, bc_loss

    def _record(self, done: int, m: int, d_stats: dict[str, float], bc_loss: float | None, bar: Any, log: Any) -> None:
        """A learning-curve point after ``done`` iterations (evaluated now), shown on the bar and logged."""
        rets = self.evaluate(self.g.eval_episodes, 300_000)
        model = self.model
        train_eps = [e["r"] for e in model.ep_info_buffer] if model.ep_info_buffer else []
        point = {
            "iteration": done,
            "steps": done * self.per_iter,
            "return": float(rets.mean()),
            "prefix_max": m,
            "wall_s": round(self.wall, 1),
            **{k: round(v, 4) for k, v in d_stats.items()},
            "train_episode_return": float(np.mean(train_eps)) if train_eps else None,
        }
        if bc_loss is not None:
            point["prefix_bc_loss"] = bc_loss
        self.curve.append(point)
        bar.set_postfix(ret=f"{rets.mean():.0f}", m=m, d=f"{d_stats['d_loss']:.3f}")
        if log is not None:
            log(json.dumps(point))

    def finish(self) -> dict[str, Any]:
        """Save the policy, evaluate it, write and return ``result.json``."""
        g, cfg = self.g, self.cfg
        self.vecnorm.training = False
        self.model.save(str(self.run_dir / "policy.zip"))
        self.vecnorm.save(str(self.run_dir / "vecnormalize.pkl"))
        rets = self.evaluate(g.final_eval_episodes, 100_000)
        result = {
            "method": g.method,
            "env_id": env_id(cfg.env),
            "n_demos": g.n_demos,
            "seed": cfg.seed,
            **summary(rets),
            "returns": rets.tolist(),
            "iterations": self.n_iters,
            "steps": self.n_iters * self.per_iter,
            "wall_s": self.wall,
            "curve": self.curve,
            "expert_pairs": int(len(self.exp_obs)),
            "demo_return_mean": float(self.demos.returns.mean()),
            "final_prefix_max": prefix_at(self.schedule, self.n_iters - 1),
        }
        (self.run_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
        return result


def train_gail(
    cfg: ControlConfig, demos: str | Path | DemoDataset, run_dir: str | Path, log: Any = None
) -> dict[str, Any]:
    """Train GAIL or GAIL + interpolation (``cfg.gail.method``); resumes from ``run_dir/checkpoint``.

    Returns (and writes to ``run_dir/result.json``) the final evaluation and the learning curve.
    """
    run = _GailRun(cfg, demos, run_dir)
    run.train(log)
    return run.finish()


def load_policy(run_dir: str | Path, deterministic: bool = True) -> PPOActor:
    """A trained GAIL policy (``policy.zip`` + ``vecnormalize.pkl``) as a raw-observation actor."""
    return PPOActor.load(run_dir, "policy.zip", deterministic)
