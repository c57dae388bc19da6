"""Steps are written with their unit ('500it', '40ep'): a bare number is refused in one line naming the value and
both forms, for every step-valued field and flag, rather than silently read as iterations."""

import subprocess
import sys

import pytest

from ticketlab.cli import main
from ticketlab.config import ExperimentConfig, parse_step
from ticketlab.errors import ConfigError


@pytest.mark.parametrize("arguments, label, count", [
    (["--steps", "500"], "train.steps", "500"),
    (["--train.eval_every", "20"], "train.eval_every", "20"),
    (["--train.warmup", " 10 "], "train.warmup", "10"),
    (["--train.schedule", "step", "--train.milestones", "40ep,80"], "train.milestones", "80"),
    (["--rewind", "5"], "prune.rewind", "5"),
    (["--prune.finetune_steps", "7", "--variants", "finetune"], "prune.finetune_steps", "7"),
    (["--prune.early_bird_every", "2"], "prune.early_bird_every", "2"),
])
def test_a_step_without_its_unit_is_one_line(arguments, label, count, capsys):
    assert main(["config", *arguments]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err == (f"ticketlab: error: {label} {count!r} has no unit; write iterations as '{count}it' or "
                            f"epochs as '{count}ep'\n")


def test_steps_with_units_are_accepted_everywhere():
    config = ExperimentConfig().replace(**{"train.steps": "500it", "train.eval_every": "2ep", "prune.rewind": "0it",
                                           "train.warmup": " 10it "})
    assert config.train.steps == "500it"
    assert parse_step("12") == 12  # the library's parser still reads a bare count (the config refuses it)


def test_the_sweep_and_stability_rewinds_need_units(tmp_path, capsys):
    assert main(["sweep", "--rewinds", "0it,50", "--root", str(tmp_path)]) == 2
    assert "prune.rewind '50' has no unit; write iterations as '50it'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
    from ticketlab.analysis.stability import StabilitySettings

    with pytest.raises(ConfigError, match=r"--rewind '100' has no unit; write iterations as '100it' or epochs"):
        StabilitySettings(rewind_steps=("0it", "100")).validate()
    StabilitySettings(rewind_steps=("0it", "100it")).validate()


def test_the_installed_command_refuses_a_bare_step(tmp_path):
    done = subprocess.run([sys.executable, "-m", "ticketlab", "find", "--steps", "500", "--root", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == ("ticketlab: error: train.steps '500' has no unit; write iterations as '500it' or epochs "
                           "as '500ep'\n")
    assert not list(tmp_path.iterdir())
