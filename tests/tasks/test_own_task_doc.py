"""docs/tasks/own-task.md as a user follows it: its Python block is saved as sine_task.py (tests/test_docs.py runs
it as a script too), and its command lines run as shown, with `--task-module sine_task.py`. The run directory
the page names is the one the command line's settings hash to (cheap); the whole session of commands is slow."""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import pytest

from ticketlab.cli import main
from ticketlab.config import config_from_dict
from ticketlab.tasks import unregister_task

PAGE = Path(__file__).resolve().parents[2] / "docs" / "tasks" / "own-task.md"


def _page_parts() -> tuple[str, list[list[str]]]:
    text = PAGE.read_text(encoding="utf-8")
    [code] = re.findall(r"^```python\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
    [shell] = re.findall(r"^```bash\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
    commands = [shlex.split(line)[1:] for line in shell.replace("\\\n", " ").splitlines() if line.strip()]
    return code, commands


@pytest.fixture
def user_directory(tmp_path, monkeypatch):
    """An empty directory holding the page's sine_task.py, as the current directory; the task is forgotten after."""
    code, commands = _page_parts()
    (tmp_path / "sine_task.py").write_text(code, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    yield tmp_path, commands
    sys.modules.pop("sine_task", None)
    unregister_task("sine")


def test_the_page_names_the_run_directory_its_settings_hash_to(user_directory, capsys):
    _, commands = user_directory
    find = commands[0]
    assert find[:3] == ["--task-module", "sine_task.py", "find"]
    assert main([*find[:2], "config", *find[3:find.index("--root")]]) == 0
    config = config_from_dict(json.loads(capsys.readouterr().out))
    named = {Path(word).name for command in commands[1:] for word in command if word.startswith("runs/")}
    assert named == {config.run_name()}
    import sine_task  # the module --task-module imported: the Python block's config is the command line's

    assert sine_task.TASK.config(trials=1, variants=["iterative_reset", "random_pruning", "iterative_reinit"], **{
        "train.steps": "200it", "train.eval_every": "50it", "train.batch_size": 32, "train.lr": 0.01,
        "prune.levels": 2, "prune.rate": 0.5, "prune.rewind": "20it"}) == config


@pytest.mark.slow
def test_the_page_commands_run_as_shown(user_directory, capsys):
    directory, commands = user_directory
    for command in commands:
        assert main([*command, *(["--quiet"] if {"find", "stability", "transfer"} & set(command[:3]) else [])]) == 0, (
            command, capsys.readouterr().err)
    [run_dir] = directory.glob("runs/sine_sine_*")
    assert (run_dir / "report.html").is_file() and (run_dir / "analysis" / "stability" / "stability.csv").is_file()
    assert json.loads((directory / "sine_ticket" / "ticket.json").read_text())["level"] == 2
    [transfer] = directory.glob("runs/transfer_*/transfer.csv")
    assert "early_stop_test_metric" in transfer.read_text().splitlines()[0]
