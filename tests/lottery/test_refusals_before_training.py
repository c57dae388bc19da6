"""Settings the model cannot satisfy, refused from the config and the untrained model alone: one line, exit
status 2, before the dense network trains (no run directory, no weights, no metrics, no result)."""

from __future__ import annotations

import functools

import pytest

from ticketlab.cli import main

TINY = ["--model.hidden", "16,16", "--steps", "20it", "--levels", "1", "--trials", "1", "--data.train_size", "500",
        "--train.eval_every", "10it", "--quiet", "--no-report", "--workers", "1"]


@pytest.fixture(scope="module", autouse=True)
def cached_mnist1d(one_thread_for_module):
    import ticketlab.data.mnist1d as mnist1d

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mnist1d, "generate_mnist1d", functools.lru_cache(maxsize=1)(mnist1d.generate_mnist1d))
        yield


@pytest.mark.parametrize("extra, fragments", [
    (["--variants", "iterative_reset,early_bird", "--prune.early_bird_criterion", "channels"],
     ["prune.early_bird_criterion 'channels' needs BatchNorm layers", "MLP", "use 'weights'"]),
    (["--prune.unit", "channel", "--prune.channel_score", "bn_scale"],
     ["prune.channel_score 'bn_scale' needs a BatchNorm", "layers.1", "use 'l1'"]),
])
def test_refused_before_the_dense_network_trains(extra, fragments, tmp_path, capsys):
    root = tmp_path / "runs"
    code = main(["find", *TINY, *extra, "--root", str(root)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("ticketlab: error: "), err
    assert "Traceback" not in err[0]
    for fragment in fragments:
        assert fragment in err[0], err[0]
    written = [path for path in root.rglob("*") if path.is_file()] if root.exists() else []
    assert not [path for path in written if path.suffix in (".safetensors", ".jsonl", ".csv")
                or path.name == "result.json"], written


def test_a_batchnorm_model_is_accepted_by_the_same_checks():
    """The check does not refuse what works: VGG has BatchNorm after every conv (its output layer is no group)."""
    from ticketlab.config import ExperimentConfig, ModelConfig, PruneConfig
    from ticketlab.lottery.context import check_model_settings
    from ticketlab.models import build_model

    config = ExperimentConfig(model=ModelConfig(name="vgg11", width=2),
                              prune=PruneConfig(unit="channel", channel_score="bn_scale", output_rate=None),
                              variants=("iterative_reset",))
    check_model_settings(config, build_model("vgg11", (3, 32, 32), 10, width=2))


def test_the_installed_entry_point_refuses_in_one_line_before_training(tmp_path):
    import subprocess
    import sys

    pytest.importorskip("gymnasium")  # the RL preset: no MNIST-1D to generate in the child process
    root = tmp_path / "runs"
    completed = subprocess.run(
        [sys.executable, "-m", "ticketlab", "find", "--preset", "ppo_tiny", "--variants", "iterative_reset,early_bird",
         "--prune.early_bird_criterion", "channels", "--root", str(root)],
        capture_output=True, text=True, timeout=300)
    err = completed.stderr.strip().splitlines()
    assert completed.returncode == 2 and len(err) == 1, completed.stderr
    assert err[0].startswith("ticketlab: error: prune.early_bird_criterion 'channels' needs BatchNorm"), err
    assert "MLPActorCritic" in err[0]
    assert not root.exists() or not [path for path in root.rglob("*") if path.is_file() and path.name != ".lock"]
