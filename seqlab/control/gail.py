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


def _make_ppo(venv: Any, g: GailConfig, seed: int) -> Any:
    from stable_baselines3 import PPO

    return PPO("MlpPolicy", venv, n_steps=g.n_steps, batch_size=g.batch_size, n_epochs=g.n_epochs,
               learning_rate=g.lr, gamma=g.gamma, gae_lambda=g.gae_lambda, clip_range=g.clip_range,
               ent_coef=g.ent_coef, policy_kwargs=dict(net_arch=list(g.net_arch), activation_fn=nn.Tanh),
               seed=seed, device="cpu", verbose=0)


def _prefix_bc_step(model: Any, vecnorm: Any, wrappers: list[DemoPrefixReset], coef: float,
                    rng: np.random.Generator, batch: int = 256) -> float | None:
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
    _, log_prob, _ = policy.evaluate_actions(torch.as_tensor(o_n, dtype=torch.float32),
                                             torch.as_tensor(a[idx], dtype=torch.float32))
    loss = -coef * log_prob.mean()
    policy.optimizer.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(policy.parameters(), model.max_grad_norm)
    policy.optimizer.step()
    policy.set_training_mode(False)
    return float(loss.detach())


def train_gail(cfg: ControlConfig, demos: str | Path | DemoDataset, run_dir: str | Path,
               log: Any = None) -> dict[str, Any]:
    """Train GAIL or GAIL + interpolation (``cfg.gail.method``); resumes from ``run_dir/checkpoint``.

    Returns (and writes to ``run_dir/result.json``) the final evaluation and the learning curve.
    """
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecNormalize

    from seqlab.control.expert import _progress, make_vec_env

    g = cfg.gail
    run_dir = Path(run_dir)
    ckpt = run_dir / "checkpoint"
    ckpt.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    ds = demos if isinstance(demos, DemoDataset) else DemoDataset.load(demos)
    sub = ds.subset(g.n_demos)
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    exp_obs, exp_act, idx = sub.sample_pairs(g.pairs_per_trajectory, rng, g.subsample)
    states = reset_states(sub, idx if g.reset_states == "subsampled" else None)

    disc = Discriminator.for_demos(exp_obs, exp_act.shape[1], tuple(g.d_hidden), g.reward)
    trainer = DiscriminatorTrainer(disc, exp_obs, exp_act, g.d_lr, g.d_batch, g.d_entcoeff, cfg.seed)
    wrappers: list[DemoPrefixReset] = []

    def wrap(env: Any, rank: int) -> Any:
        w = DemoPrefixReset(env, states if g.method == "gail_interp" else None, g.prefix_sampling,
                            seed=cfg.seed * 1000 + rank)
        wrappers.append(w)
        return w

    venv = DiscriminatorReward(make_vec_env(cfg.env, g.n_envs, cfg.seed, cfg.max_episode_steps, wrap), disc)
    n_iters = iterations(g)
    per_iter = g.n_envs * g.n_steps
    schedule = prefix_schedule(g, n_iters)
    curve: list[dict[str, Any]] = []
    wall, start_iter = 0.0, 0
    bc_rng = np.random.default_rng(cfg.seed + 1)
    if (ckpt / "ppo.zip").exists():
        vecnorm = VecNormalize.load(str(ckpt / "vecnormalize.pkl"), venv)
        model = PPO.load(str(ckpt / "ppo.zip"), env=vecnorm, device="cpu")
        state = torch.load(ckpt / "state.pt", weights_only=False)
        trainer.load_state_dict(state["trainer"])
        for w, s in zip(wrappers, state["prefix_rng"], strict=True):
            w.rng.bit_generator.state = s
        bc_rng.bit_generator.state = state["bc_rng"]
        curve, wall, start_iter = state["curve"], state["wall_s"], state["iteration"]
    else:
        vecnorm = VecNormalize(venv, norm_obs=g.normalize_obs, norm_reward=g.normalize_reward, gamma=g.gamma)
        model = _make_ppo(vecnorm, g, cfg.seed)

    def save_checkpoint(iteration: int) -> None:
        model.save(str(ckpt / "ppo.zip"))
        vecnorm.save(str(ckpt / "vecnormalize.pkl"))
        torch.save({"trainer": trainer.state_dict(), "prefix_rng": [w.rng.bit_generator.state for w in wrappers],
                    "bc_rng": bc_rng.bit_generator.state, "curve": curve, "wall_s": wall, "iteration": iteration},
                   ckpt / "state.pt")

    def eval_now(n: int, seed: int) -> np.ndarray:
        actor = PPOActor.from_vecnormalize(model.policy, vecnorm, g.deterministic_eval)
        return evaluate(cfg.env, actor, n, seed=seed, max_episode_steps=cfg.max_episode_steps)

    if start_iter < n_iters:
        fresh = start_iter == 0 and model.num_timesteps == 0
        remaining = (n_iters - start_iter) * per_iter
        _, callback = model._setup_learn(remaining, None, reset_num_timesteps=fresh)
        callback.on_training_start(locals(), globals())
        if start_iter == 0:  # the untrained policy, for the learning curve
            rets = eval_now(g.eval_episodes, 300_000)
            curve.append({"iteration": 0, "steps": 0, "return": float(rets.mean()), "prefix_max": None})
        bar = _progress(n_iters, start_iter, f"{g.method} {env_id(cfg.env)} {g.n_demos} demos s{cfg.seed}",
                        cfg.progress_bar)
        for it in range(start_iter, n_iters):
            t0 = time.time()
            m = prefix_at(schedule, it)
            for w in wrappers:
                w.set_max_prefix(m)
            model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=g.n_steps)
            model._update_current_progress_remaining(model.num_timesteps, model._total_timesteps)
            pol_obs, pol_act = venv.pop_pairs()
            d_stats = trainer.update(pol_obs, pol_act, g.d_steps)
            model.train()
            bc_loss = _prefix_bc_step(model, vecnorm, wrappers, g.prefix_bc_coef, bc_rng) \
                if g.prefix_bc_coef > 0 else None
            if g.prefix_bc_coef <= 0:
                for w in wrappers:
                    w.prefix_log.clear()
            wall += time.time() - t0
            done = it + 1
            if done % g.eval_every == 0 or done == n_iters:
                rets = eval_now(g.eval_episodes, 300_000)
                train_eps = [e["r"] for e in model.ep_info_buffer] if model.ep_info_buffer else []
                point = {"iteration": done, "steps": done * per_iter, "return": float(rets.mean()),
                         "prefix_max": m, "wall_s": round(wall, 1), **{k: round(v, 4) for k, v in d_stats.items()},
                         "train_episode_return": float(np.mean(train_eps)) if train_eps else None}
                if bc_loss is not None:
                    point["prefix_bc_loss"] = bc_loss
                curve.append(point)
                bar.set_postfix(ret=f"{rets.mean():.0f}", m=m, d=f"{d_stats['d_loss']:.3f}")
                if log is not None:
                    log(json.dumps(point))
            if done % g.checkpoint_every == 0 or done == n_iters:
                save_checkpoint(done)
            bar.update(1)
        bar.close()
    vecnorm.training = False
    model.save(str(run_dir / "policy.zip"))
    vecnorm.save(str(run_dir / "vecnormalize.pkl"))
    rets = eval_now(g.final_eval_episodes, 100_000)
    result = {"method": g.method, "env_id": env_id(cfg.env), "n_demos": g.n_demos, "seed": cfg.seed,
              **summary(rets), "returns": rets.tolist(), "iterations": n_iters, "steps": n_iters * per_iter,
              "wall_s": wall, "curve": curve, "expert_pairs": int(len(exp_obs)),
              "demo_return_mean": float(sub.returns.mean()), "final_prefix_max": prefix_at(schedule, n_iters - 1)}
    (run_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def load_policy(run_dir: str | Path, deterministic: bool = True) -> PPOActor:
    """A trained GAIL policy (``policy.zip`` + ``vecnormalize.pkl``) as a raw-observation actor."""
    return PPOActor.load(run_dir, "policy.zip", deterministic)
