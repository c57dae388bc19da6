"""`export` and `cost` on runs of tasks whose models take more than one tensor or carry state (language,
translation, RL): one line naming the task, before any data or job file is read (they crashed with
AttributeError: '...' object has no attribute 'evaluate_batches')."""

import json

import pytest

from ticketlab.cli import main
from ticketlab.presets import preset


def _run_directory_of(config, tmp_path):
    """A run directory holding only the config.json `find` writes (no data, no jobs): enough to be refused."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    record = {"hash": config.hash(), "fingerprint": "", "config": config.to_dict()}
    (run_dir / "config.json").write_text(json.dumps(record))
    return run_dir


@pytest.mark.parametrize("preset_name,task", [("lstm_tiny", "language"), ("transformer_tiny", "translation"),
                                              ("ppo_tiny", "rl")])
@pytest.mark.parametrize("command", [["cost"], ["export", "--level", "1", "--format", "prune"]])
def test_export_and_cost_refuse_tasks_without_example_inputs(tmp_path, capsys, preset_name, task, command):
    run_dir = _run_directory_of(preset(preset_name), tmp_path)
    before = sorted(path.name for path in run_dir.rglob("*"))
    argv = [command[0], str(run_dir), *command[1:]]
    if command[0] == "export":
        argv += ["--output", str(tmp_path / "ticket.safetensors")]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error
    assert f"is a {task} run" in error and command[0] in error
    assert sorted(path.name for path in run_dir.rglob("*")) == before
    assert not (tmp_path / "ticket.safetensors").exists()
