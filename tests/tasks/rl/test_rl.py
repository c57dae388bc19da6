"""The RL task: seeded, replayable environments, PPO that learns, exact masks and resume, the engine and CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

pytest.importorskip("gymnasium")

import ticketlab
from ticketlab.cli import main
from ticketlab.errors import ConfigError
from ticketlab.pruning import full_masks, keep_top, prunable_weights, random_scores
from ticketlab.store import load_tensors
from ticketlab.tasks import load_task
from ticketlab.tasks.base import load_task_data
from ticketlab.tasks.rl.envs import check_action_space
from ticketlab.tasks.rl.ppo import TrainingInterrupted
from ticketlab.tasks.rl.rollout import EnvRunner

TASK = load_task("rl")


def _setup(preset="ppo_tiny", **changes):
    config = ticketlab.preset(preset).replace(**changes)
    data = load_task_data(TASK, config)
    return config, data, TASK.initialize(TASK.build_model(config, data), config, 0)


def test_environment_state_is_restored_by_replaying_its_actions():
    runner = EnvRunner("CartPole-v1", 3, data_seed=5)
    runner.start()
    rng = np.random.default_rng(0)
    for _ in range(40):  # long enough for some episodes to end and be reseeded
        runner.step(rng.integers(0, 2, size=3))
    state, observations = runner.state(), runner.observations.copy()
    returns = runner.returns.copy()
    restored = EnvRunner("CartPole-v1", 3, data_seed=5)
    assert np.array_equal(restored.start(state), observations)
    assert np.array_equal(restored.returns, returns)
    actions = rng.integers(0, 2, size=3)
    assert np.array_equal(runner.step(actions)[3], restored.step(actions)[3])
    assert max(state["episodes"]) >= 1
    runner.close(), restored.close()


def test_ppo_learns_cartpole_to_its_threshold():
    """CleanRL's settings, 150 iterations (76,800 steps), one seed: the greedy policy's test return passes
    CartPole-v1's reward threshold of 475."""
    config, data, model = _setup("ppo_cartpole")
    result = TASK.train(model, data, config.train, masks=full_masks(prunable_weights(model)), data_seed=1)
    assert result.final_test_metric >= 475, result
    assert result.env_steps == 150 * 4 * 128


def _random_masks(model, keep=0.5, seed=3):
    weights = prunable_weights(model)
    return keep_top(random_scores(weights, seed), {name: int(keep * w.numel()) for name, w in weights.items()})


def test_pruned_weights_stay_exactly_zero():
    config, data, model = _setup()
    masks = _random_masks(model)
    TASK.train(model, data, config.train, masks=masks, data_seed=0)
    for name, weight in prunable_weights(model).items():
        assert torch.all(weight[masks[name] == 0] == 0), name
        assert torch.any(weight[masks[name] == 1] != 0), name
    names = list(prunable_weights(model))
    assert "policy_head.weight" in names and "value_head.weight" in names and not any("bias" in n for n in names)


def test_resume_after_an_interruption_is_exact(tmp_path):
    config, data, _ = _setup(**{"train.steps": "6it", "train.eval_every": "2it"})
    masks = _random_masks(_setup()[2])

    def fresh():
        return TASK.initialize(TASK.build_model(config, data), config, 0)

    whole = fresh()
    expected = TASK.train(whole, data, config.train, masks=masks, data_seed=2)
    interrupted = fresh()
    with pytest.raises(TrainingInterrupted):
        TASK.train(interrupted, data, config.train, masks=masks, data_seed=2, job_dir=tmp_path,
                   checkpoint_interval_s=0.0, stop_after_step=3)
    resumed = fresh()
    result = TASK.train(resumed, data, config.train, masks=masks, data_seed=2, job_dir=tmp_path)
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert result == expected
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [2, 4, 6]


def test_a_shared_trunk_has_one_trunk():
    _, _, separate = _setup()
    _, _, shared = _setup(**{"rl.shared_trunk": True})
    assert len(prunable_weights(shared)) == len(prunable_weights(separate)) - 2


def test_tiny_run_through_the_entry_point(tmp_path, capsys):
    assert main(["find", "--preset", "ppo_tiny", "--root", str(tmp_path), "--quiet", "--no-report"]) == 0
    (run_dir,) = tmp_path.iterdir()
    rows = list(csv.DictReader((run_dir / "results.csv").open()))
    assert {row["metric"] for row in rows} == {"return"} and len(rows) == 9
    for mask_path in run_dir.rglob("mask.safetensors"):
        mask, final = load_tensors(mask_path), load_tensors(mask_path.parent / "weights_final.safetensors")
        assert all(torch.all(final[name][~keep.bool()] == 0) for name, keep in mask.items())
    before = (run_dir / "results.csv").read_text()
    assert main(["find", "--preset", "ppo_tiny", "--root", str(tmp_path), "--quiet", "--no-report"]) == 0
    assert (run_dir / "results.csv").read_text() == before


@pytest.mark.parametrize("extra, fragments", [
    (["--data.name", "Pendulum-v9"], ["data.name 'Pendulum-v9'", "CartPole-v1"]),
    (["--rl.num_envs", "0"], ["rl.num_envs 0"]),
    (["--rl.rollout_steps", "-3"], ["rl.rollout_steps -3"]),
    (["--model.name", "nature_cnn"], ["model.name 'nature_cnn' needs image observations", "CartPole-v1",
                                      "shape [4]", "use model.name mlp"]),  # before training (was: conv2d error)
])
def test_bad_settings_are_one_line(extra, fragments, tmp_path, capsys):
    code = main(["find", "--preset", "ppo_tiny", "--root", str(tmp_path), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("ticketlab: error: "), err
    for fragment in fragments:
        assert fragment in err[0], err[0]
    assert list(tmp_path.iterdir()) == []


def test_a_cnn_policy_on_vector_observations_is_refused_by_the_installed_entry_point(tmp_path):
    import subprocess
    import sys

    completed = subprocess.run([sys.executable, "-m", "ticketlab", "find", "--preset", "ppo_tiny", "--model.name",
                                "nature_cnn", "--root", str(tmp_path / "runs"), "--quiet"],
                               capture_output=True, text=True, timeout=300)
    err = completed.stderr.strip().splitlines()
    assert completed.returncode == 2 and len(err) == 1, completed.stderr
    assert err[0].startswith("ticketlab: error: model.name 'nature_cnn' needs image observations"), err
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("*.safetensors"))


def test_a_continuous_action_space_is_refused():
    import gymnasium

    with pytest.raises(ConfigError, match="Box action space; the PPO agent handles Discrete actions only"):
        check_action_space("Pendulum-v1", gymnasium.spaces.Box(-1, 1, (1,)))


def test_a_missing_extra_names_its_install_command(monkeypatch, tmp_path, capsys):
    import gymnasium

    def missing(*args, **kwargs):
        raise gymnasium.error.DependencyNotInstalled("Box2D is not installed")

    monkeypatch.setattr(gymnasium, "make", missing)
    code = main(["find", "--preset", "ppo_lunarlander", "--root", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["ticketlab: error: LunarLander-v3 needs ticketlab[box2d]: pip install "
                                 "'ticketlab[box2d]'"], err


def test_every_mean_return_is_stored_with_its_episode_returns(tmp_path, capsys):
    """metrics.jsonl rows and result.json hold the evaluation episodes' returns behind each mean return (the
    population path, through `main`, and the one-agent path), and they are the returns `evaluate` plays."""
    from ticketlab.tasks.rl.evaluate import episode_returns, evaluation_seeds

    assert main(["find", "--preset", "ppo_tiny", "--root", str(tmp_path / "runs"), "--quiet", "--no-report",
                 "--variants", "iterative_reset", "--levels", "1"]) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    config, data, _ = _setup()
    episodes = config.rl.eval_episodes
    results = list(run_dir.rglob("result.json"))
    assert len(results) == 2
    for result_path in results:
        result = json.loads(result_path.read_text())
        rows = [json.loads(line) for line in (result_path.parent / "metrics.jsonl").read_text().splitlines()]
        for row in rows:
            assert len(row["val_returns"]) == episodes
            assert row["val_return"] == pytest.approx(float(np.mean(row["val_returns"])), abs=1e-12)
            assert "train_returns" in row
            if "test_return" in row:
                assert len(row["test_returns"]) == episodes
                assert row["test_return"] == pytest.approx(float(np.mean(row["test_returns"])), abs=1e-12)
        best = next(row for row in rows if row["step"] == result["early_stop_iteration"])
        assert result["early_stop_val_returns"] == best["val_returns"]
        assert result["early_stop_test_returns"] == best["test_returns"]
        assert result["early_stop_test_metric"] == pytest.approx(np.mean(result["early_stop_test_returns"]), abs=1e-12)
        assert result["final_val_returns"] == rows[-1]["val_returns"]
        assert -result["final_val_loss"] == pytest.approx(np.mean(result["final_val_returns"]), abs=1e-12)
        assert result["final_test_metric"] == pytest.approx(np.mean(result["final_test_returns"]), abs=1e-12)
        # replayed here from the stored final weights: the same episodes, the same returns
        model = TASK.build_model(config, data)
        model.load_state_dict(load_tensors(result_path.parent / "weights_final.safetensors"))
        assert episode_returns(model, data, "test", config.rl) == result["final_test_returns"]
    assert len(evaluation_seeds("val", episodes)) == episodes

    # the one-agent trainer stores the same things
    config, data, model = _setup(**{"train.steps": "3it", "train.eval_every": "2it"})
    result = TASK.train(model, data, config.train, masks=full_masks(prunable_weights(model)), data_seed=2,
                        job_dir=tmp_path / "alone")
    rows = [json.loads(line) for line in (tmp_path / "alone" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [2, 3]
    for row in rows:
        assert row["val_return"] == pytest.approx(float(np.mean(row["val_returns"])), abs=1e-12)
    assert result.final_test_metric == pytest.approx(np.mean(result.final_test_returns), abs=1e-12)
    assert result.early_stop_test_metric == pytest.approx(np.mean(result.early_stop_test_returns), abs=1e-12)
