"""Control: demonstration resets, the discriminator's reward, the interpolation schedule, a tiny GAIL run."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
import torch

pytest.importorskip("gymnasium")
pytest.importorskip("mujoco")
pytest.importorskip("stable_baselines3")

from seqlab.control.config import ControlConfig, GailConfig, load_control_config  # noqa: E402
from seqlab.control.demos import DemoDataset, reset_states, rollout  # noqa: E402
from seqlab.control.discriminator import (  # noqa: E402
    Discriminator,
    DiscriminatorTrainer,
    reward_from_logits,
)
from seqlab.control.envs import DemoPrefixReset, make_env, set_state  # noqa: E402
from seqlab.control.gail import iterations, prefix_at, prefix_schedule, train_gail  # noqa: E402


def _gait(t_obs: np.ndarray) -> np.ndarray:
    """A fixed, deterministic 'expert': a smooth function of the observation."""
    return np.tanh(np.sin(np.arange(1, 7) * float(t_obs.sum())))


def _demos(env_name: str = "hopper", n: int = 3, steps: int = 40, seed: int = 0) -> DemoDataset:
    env = make_env(env_name, max_episode_steps=steps)
    act_dim = env.action_space.shape[0]
    return rollout(env, lambda o: _gait(o)[:act_dim], n, seed=seed)


@pytest.mark.parametrize("name", ["hopper", "halfcheetah", "walker2d"])
def test_reset_to_demo_state_reproduces_next_observation(name):
    ds = _demos(name, n=2, steps=30)
    env = make_env(name)
    for t in (0, 5, 17, int(ds.lengths[0]) - 1):
        env.reset(seed=123)  # a different start state: set_state must override it entirely
        obs = set_state(env, ds.qpos[t], ds.qvel[t])
        np.testing.assert_allclose(obs, ds.obs[t], rtol=0, atol=1e-6)
        nxt, r, *_ = env.step(ds.actions[t])
        np.testing.assert_allclose(nxt, ds.next_obs[t], rtol=0, atol=1e-6)
        assert r == pytest.approx(float(ds.rewards[t]), abs=1e-5)


def test_prefix_wrapper_starts_inside_the_demonstration_and_keeps_the_horizon():
    ds = _demos("hopper", n=2, steps=40)
    idx = ds.sample_indices(10, np.random.default_rng(0))
    states = reset_states(ds, idx)
    env = DemoPrefixReset(make_env("hopper", max_episode_steps=40), states, sampling="fixed", seed=0)
    env.set_max_prefix(25)
    obs, info = env.reset(seed=1)
    t = info["demo_prefix"]
    assert 0 < t <= 25 and env.set_state_calls == 1
    j, i = env.prefix_log[-1]
    g = idx[j][i]  # global index of the state started from
    assert ds.timesteps[g] == t
    np.testing.assert_allclose(obs, ds.obs[g], atol=1e-6)
    nxt, *_ = env.step(ds.actions[g])
    np.testing.assert_allclose(nxt, ds.next_obs[g], atol=1e-6)
    # the policy part ends when prefix + policy steps reach the horizon (40)
    steps, done, term = 1, False, False
    while not done:
        _, _, term, trunc, _ = env.step(np.zeros(3, dtype=np.float32))
        steps += 1
        done = term or trunc
    assert term or t + steps == 40


def test_discriminator_reward_sign_and_scale():
    logits = torch.tensor([-20.0, -2.0, 0.0, 2.0, 20.0])
    r = reward_from_logits(logits, "gail")  # -log(1 - D)
    mid = torch.linspace(-5, 5, 11, dtype=torch.float64)
    torch.testing.assert_close(reward_from_logits(mid, "gail"), -torch.log1p(-torch.sigmoid(mid)))
    assert (r >= 0).all() and (r[1:] > r[:-1]).all()  # positive, increasing in D
    assert r[2].item() == pytest.approx(math.log(2.0))  # uninformed D pays log 2
    assert r[-1].item() == pytest.approx(20.0, abs=1e-6) and r[0].item() < 1e-8  # ~ logit / ~ 0
    torch.testing.assert_close(reward_from_logits(logits, "airl"), logits)
    r_logd = reward_from_logits(logits, "logd")
    assert (r_logd <= 0).all() and r_logd[2].item() == pytest.approx(-math.log(2.0))
    torch.testing.assert_close(
        reward_from_logits(logits, "gail") + reward_from_logits(-logits, "logd"), torch.zeros(5), atol=1e-6, rtol=0
    )  # -log(1-D) = -log D(-l)

    # a discriminator that separates: expert pairs get larger rewards than policy pairs
    rng = np.random.default_rng(0)
    e_obs, p_obs = rng.normal(1.0, 0.1, (256, 4)), rng.normal(-1.0, 0.1, (256, 4))
    e_act, p_act = np.zeros((256, 2)), np.zeros((256, 2))
    torch.manual_seed(0)
    disc = Discriminator.for_demos(e_obs, 2, (16, 16))
    with torch.no_grad():
        disc.net[-1].weight.zero_()
        disc.net[-1].bias.zero_()
    np.testing.assert_allclose(disc.reward(p_obs, p_act), math.log(2.0), rtol=1e-6)  # D = 1/2
    trainer = DiscriminatorTrainer(disc, e_obs, e_act, lr=1e-2, batch=64, entcoeff=0.0)
    before = trainer.evaluate(p_obs, p_act)["d_loss"]
    assert before == pytest.approx(math.log(2.0), abs=1e-6)
    for _ in range(5):
        trainer.update(p_obs, p_act, steps=8)
    assert trainer.evaluate(p_obs, p_act)["d_loss"] < 0.1
    assert disc.reward(e_obs, e_act).min() > disc.reward(p_obs, p_act).max()


def test_schedule_reaches_plain_gail():
    g = GailConfig(method="gail_interp", total_steps=100 * 2048, prefix_start=400, prefix_anneal_fraction=0.5)
    n = iterations(g)
    sched = prefix_schedule(g, n)
    values = [prefix_at(sched, it) for it in range(n)]
    assert values[0] == 400
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))  # shrinks
    assert values[n // 2] == 0 and set(values[n // 2 :]) == {0}  # plain GAIL for the second half
    assert set(prefix_at(prefix_schedule(GailConfig(method="gail"), n), it) for it in range(n)) == {0}
    # an explicit spec from the schedules module, e.g. a step schedule
    g2 = GailConfig(
        method="gail_interp",
        prefix_schedule={"type": "step", "start": 300, "delta": -100, "every": 10, "lower": 0, "unit": "step"},
    )
    s2 = prefix_schedule(g2, n)
    assert [prefix_at(s2, it) for it in (0, 9, 10, 25, 30, 99)] == [300, 300, 200, 100, 0, 0]

    # with m = 0 the wrapper's reset is the environment's own reset
    ds = _demos("hopper", n=2, steps=30)
    w = DemoPrefixReset(make_env("hopper"), reset_states(ds), sampling="uniform", seed=0)
    w.set_max_prefix(values[-1])
    plain = make_env("hopper")
    for seed in range(5):
        obs, info = w.reset(seed=seed)
        np.testing.assert_array_equal(obs, plain.reset(seed=seed)[0])
        assert info["demo_prefix"] == 0
    assert w.set_state_calls == 0


def test_demo_dataset_roundtrip_and_sampling(tmp_path):
    ds = _demos("hopper", n=3, steps=120)
    path = ds.save(tmp_path / "demos.npz")
    back = DemoDataset.load(path)
    assert (tmp_path / "demos.json").exists()
    for k in ("obs", "actions", "qpos", "qvel", "episode_starts", "returns"):
        np.testing.assert_array_equal(getattr(back, k), getattr(ds, k))
    assert back.n_trajectories == 3 and back.subset(2).n_trajectories == 2
    obs, act, idx = back.sample_pairs(50, np.random.default_rng(0))
    assert [len(i) for i in idx] == [min(50, n) for n in back.lengths]
    for j, i in enumerate(idx):  # pairs stay inside their trajectory
        sl = back.trajectory(j)
        assert i.min() >= sl.start and i.max() < sl.stop
    assert len(obs) == sum(len(i) for i in idx)
    np.testing.assert_allclose(back.returns, [back.rewards[back.trajectory(j)].sum() for j in range(3)], rtol=1e-5)


def test_tiny_gail_interp_run_improves_discriminator_loss_and_resumes(tmp_path):
    demos = _demos("hopper", n=2, steps=20)
    g = GailConfig(
        method="gail_interp",
        n_demos=2,
        pairs_per_trajectory=10,
        total_steps=3 * 256,
        n_envs=1,
        n_steps=256,
        batch_size=64,
        n_epochs=2,
        d_steps=8,
        d_batch=64,
        d_lr=1e-3,
        prefix_start=15,
        eval_every=1,
        eval_episodes=1,
        final_eval_episodes=2,
        checkpoint_every=1,
        net_arch=[16, 16],
        d_hidden=[32, 32],
    )
    cfg = ControlConfig(env="hopper", seed=0, max_episode_steps=20, progress_bar=False, gail=g)
    res = train_gail(cfg, demos, tmp_path / "run")
    d = [p["d_loss"] for p in res["curve"] if "d_loss" in p]
    assert len(d) == 3
    assert d[-1] < d[0] < math.log(2.0) + 0.05  # the discriminator learns to tell the policy apart
    assert res["curve"][1]["prefix_max"] == 15 and res["final_prefix_max"] == 0
    assert (tmp_path / "run" / "policy.zip").exists() and np.isfinite(res["return_mean"])
    # resume: a longer budget continues from the checkpoint instead of starting over
    g.total_steps = 4 * 256
    res2 = train_gail(cfg, demos, tmp_path / "run")
    assert res2["curve"][:4] == res["curve"][:4] and len([p for p in res2["curve"] if "d_loss" in p]) == 4


def test_config_and_cli_parser(tmp_path):
    from seqlab.config import ConfigError
    from seqlab.control.cli import add_control_parser

    cfg = load_control_config(None, ["env=walker2d", "gail.method=gail_interp", "gail.n_demos=11"])
    assert cfg.env == "walker2d" and cfg.gail.n_demos == 11
    with pytest.raises(ConfigError):
        load_control_config(None, ["gail.n_steps=64"])  # fewer than 2,048 pairs per iteration
    with pytest.raises(ConfigError):
        load_control_config(None, ["gail.nonsense=1"])
    parser = argparse.ArgumentParser()
    add_control_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["control", "train", "--method", "gail_interp", "--n-demos", "4", "--env", "hopper", "gail.d_lr=1e-4"]
    )
    assert args.control_command == "train" and args.n_demos == 4 and args.overrides == ["gail.d_lr=1e-4"]
    assert callable(args.func)
