"""One vocabulary across commands: --level/--trial select, --levels/--trials count, --rewind lists where a command
compares several; every command that trains takes the execution flags and hands them to the Python API; the old
spellings still work, with one warning line after a command that succeeded and only the error line otherwise.

The commands' API calls are replaced by recorders, so these tests train nothing (the end-to-end runs are in
test_cli_commands.py and the regression scenarios)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from ticketlab.cli import build_parser, main
from ticketlab.cli.vocabulary import deprecation_warnings

TINY = ["--model.hidden", "8", "--steps", "20it", "--levels", "1", "--trials", "1", "--quiet", "--no-report"]


def run(arguments: list[str], capsys) -> tuple[int, str, list[str]]:
    code = main(arguments)
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip().splitlines()


def parse(arguments: list[str]):
    return build_parser().parse_args(arguments)


def assert_one_line_error(code: int, err: list[str], *fragments: str) -> None:
    assert code == 2 and len(err) == 1 and err[0].startswith("ticketlab: error: "), err
    for fragment in fragments:
        assert fragment in err[0], err


def warning(command: str, old: str, new: str) -> str:
    return f"ticketlab: warning: {command} {old} is an old spelling of {new}; write {new} (the old one will go)"


# --- parsing: the new words and the old ones reach the same place ------------------------------------------


@pytest.mark.parametrize("new, old, dest", [
    (["transfer", "src", "--level", "0,2"], ["transfer", "src", "--levels", "0,2"], "transfer_levels"),
    (["stability", "run", "--level", "0,1"], ["stability", "run", "--levels", "0,1"], "levels"),
    (["stability", "run", "--trial", "0,1"], ["stability", "run", "--trials", "0,1"], "trials"),
    (["sweep", "--rewind", "0it,5it"], ["sweep", "--rewinds", "0it,5it"], "rewinds"),
])
def test_old_spellings_parse_to_the_same_value_and_are_noted(new, old, dest):
    new_args, old_args = parse(new), parse(old)
    assert getattr(new_args, dest) == getattr(old_args, dest) == new[-1]
    assert deprecation_warnings(new_args) == []
    (line,) = deprecation_warnings(old_args)
    assert line == warning(new[0], old[-2], new[-2])[len("ticketlab: warning: "):]


def test_counts_stay_counts_and_selections_default_to_everything():
    find = parse(["find", "--levels", "3", "--trials", "2", "--rewind", "5it"])
    assert (find.levels, find.trials, find.rewind) == ("3", "2", "5it")  # config shortcuts: how many, which step
    stability = parse(["stability", "run"])
    assert (stability.levels, stability.trials, stability.rewind) == (None, None, "0it")
    assert parse(["transfer", "src"]).transfer_levels == "all"
    export = parse(["export", "run", "--level", "2", "--trial", "1", "--format", "dense", "--output", "x"])
    assert (export.level, export.trial) == (2, 1)


@pytest.mark.parametrize("command", ["find", "sweep", "transfer"])
def test_every_command_that_trains_takes_the_execution_flags(command):
    parser = build_parser()
    subparsers = next(action for action in parser._actions if hasattr(action, "choices") and action.choices)
    flags = {flag for action in subparsers.choices[command]._actions for flag in action.option_strings}
    assert {"--executor", "--population", "--workers", "--checkpoint-every", "--device", "--ray-address",
            "--ray-cpus-per-task", "--root"} <= flags


def test_stability_takes_the_local_execution_flags():
    parser = build_parser()
    subparsers = next(action for action in parser._actions if hasattr(action, "choices") and action.choices)
    flags = {flag for action in subparsers.choices["stability"]._actions for flag in action.option_strings}
    assert {"--executor", "--population", "--workers", "--checkpoint-every", "--device"} <= flags


def test_help_shows_only_the_new_spellings(capsys):
    for command, new, old in (("transfer", "--level", "--levels"), ("stability", "--trial", "--trials"),
                              ("sweep", "--rewind", "--rewinds")):
        assert main([command, "--help"]) == 0
        text = capsys.readouterr().out
        assert f"{new} " in text and f"{old} " not in text, command


# --- the flags reach the Python API ---------------------------------------------------------------------------


@pytest.fixture
def recorded_sweep(monkeypatch, tmp_path):
    import ticketlab.lottery.sweep as sweep

    calls = []

    def rewind_sweep(config, rewinds, **kwargs):
        calls.append((config, rewinds, kwargs))
        return SimpleNamespace(experiments={}, summary_csv=tmp_path / "summary.csv", figure_files=[])

    monkeypatch.setattr(sweep, "rewind_sweep", rewind_sweep)
    return calls


def test_sweep_passes_population_and_checkpoint_interval(recorded_sweep, tmp_path, capsys):
    code, out, err = run(["sweep", *TINY, "--rewind", "0it,5it", "--population", "3", "--workers", "1",
                          "--checkpoint-every", "7.5", "--root", str(tmp_path)], capsys)
    assert code == 0 and err == [], err
    ((config, rewinds, kwargs),) = recorded_sweep
    assert rewinds == ["0it", "5it"] and config.prune.levels == 1
    assert (kwargs["population"], kwargs["workers"], kwargs["checkpoint_interval_s"]) == (3, 1, 7.5)
    assert (kwargs["executor"], kwargs["ray_address"], kwargs["ray_cpus_per_task"]) == ("local", None, 1)
    assert "summary:" in out


def test_sweep_old_spelling_succeeds_with_one_warning_line(recorded_sweep, tmp_path, capsys):
    code, _, err = run(["sweep", *TINY, "--rewinds", "0it,5it", "--root", str(tmp_path)], capsys)
    assert code == 0 and err == [warning("sweep", "--rewinds", "--rewind")]
    assert recorded_sweep[0][1] == ["0it", "5it"]


@pytest.mark.parametrize("extra, fragments", [
    ([], ["the following arguments are required: --rewind (see ticketlab sweep --help)"]),
    (["--rewind", "0it,0it"], ["--rewind lists '0it' more than once"]),
    (["--rewinds", "0it,0it"], ["--rewinds lists '0it' more than once"]),  # the spelling typed, and no warning
    (["--rewind", "0it", "--population", "0"], ["--population 0 must be between 1 and 100,000"]),
    (["--rewind", "0it", "--checkpoint-every", "-1"], ["--checkpoint-every -1.0 must be a finite number"]),
    (["--rewind", "0it", "--ray-address", "auto"], ["--ray-address and --ray-cpus-per-task need --executor ray"]),
])
def test_sweep_bad_input_is_one_line(extra, fragments, recorded_sweep, tmp_path, capsys):
    code, _, err = run(["sweep", *TINY, *extra, "--root", str(tmp_path)], capsys)
    assert_one_line_error(code, err, *fragments)
    assert recorded_sweep == []


@pytest.fixture
def source_run(tmp_path, capsys) -> Path:
    """A directory holding the config.json `transfer` reads its target from (nothing trained)."""
    assert main(["config", "--trials", "1", "--levels", "2", "--model.hidden", "8", "--steps", "20it"]) == 0
    source = tmp_path / "source"
    source.mkdir()
    (source / "config.json").write_text(capsys.readouterr().out)
    return source


@pytest.fixture
def recorded_transfer(monkeypatch, tmp_path):
    import ticketlab.lottery.transfer as transfer

    calls = []

    def transfer_tickets(sources, target, **kwargs):
        calls.append((sources, target, kwargs))
        return SimpleNamespace(rows=[], transfer_dir=tmp_path / "t", target_run=tmp_path / "own",
                               transfer_csv=tmp_path / "t" / "transfer.csv", figure_files=[])

    monkeypatch.setattr(transfer, "transfer_tickets", transfer_tickets)
    return calls


def test_transfer_passes_the_executor_flags(source_run, recorded_transfer, tmp_path, capsys):
    code, out, err = run(["transfer", str(source_run), "--level", "0,2", "--executor", "local", "--population", "2",
                          "--workers", "1", "--checkpoint-every", "5", "--root", str(tmp_path / "t"), "--quiet"],
                         capsys)
    assert code == 0 and err == [], err
    ((sources, target, kwargs),) = recorded_transfer
    assert sources == [str(source_run)] and target.prune.levels == 2
    assert (kwargs["levels"], kwargs["population"], kwargs["workers"], kwargs["checkpoint_interval_s"]) == (
        [0, 2], 2, 1, 5.0)
    assert (kwargs["executor"], kwargs["ray_address"], kwargs["ray_cpus_per_task"]) == ("local", None, 1)
    assert "transfer:" in out


def test_transfer_old_spelling_succeeds_with_one_warning_line(source_run, recorded_transfer, tmp_path, capsys):
    code, _, err = run(["transfer", str(source_run), "--levels", "1", "--root", str(tmp_path / "t")], capsys)
    assert code == 0 and err == [warning("transfer", "--levels", "--level")]
    assert recorded_transfer[0][2]["levels"] == [1]


@pytest.mark.parametrize("extra, fragments", [
    (["--level", "1,x"], ["--level item 'x' must be a level number >= 0 (e.g. --level 0,2,4) or 'all'"]),
    (["--levels", "1,x"], ["--levels item 'x' must be a level number >= 0 (e.g. --levels 0,2,4) or 'all'"]),
    (["--level", "1,1"], ["--level '1,1' lists level 1 more than once"]),
    (["--ray-cpus-per-task", "2"], ["--ray-address and --ray-cpus-per-task need --executor ray"]),
    (["--executor", "slurm"], ["argument --executor: invalid choice: 'slurm'", "(see ticketlab transfer --help)"]),
    (["--population", "0"], ["--population 0 must be between 1 and 100,000"]),
])
def test_transfer_bad_input_is_one_line(extra, fragments, source_run, recorded_transfer, tmp_path, capsys):
    code, _, err = run(["transfer", str(source_run), *extra, "--root", str(tmp_path / "t")], capsys)
    assert_one_line_error(code, err, *fragments)
    assert recorded_transfer == []


def test_stability_selections_and_old_spellings(monkeypatch, capsys):
    import ticketlab.analysis.stability as stability
    import ticketlab.cli.stability as command

    settings = []

    def stability_analysis(run_dir, given, **kwargs):
        settings.append(given)
        return SimpleNamespace(rows=[], trained_copies=0, files={})

    monkeypatch.setattr(stability, "stability_analysis", stability_analysis)
    monkeypatch.setattr(command, "check_run_dir", lambda run_dir, needs_config=False: None)
    code, _, err = run(["stability", "run", "--level", "0,2", "--trial", "1", "--rewind", "0it,5it"], capsys)
    assert code == 0 and err == []
    code, _, err = run(["stability", "run", "--levels", "0,2", "--trials", "1", "--rewind", "0it,5it"], capsys)
    assert code == 0 and err == [warning("stability", "--levels", "--level"),
                                 warning("stability", "--trials", "--trial")]
    assert settings[0] == settings[1]
    assert (settings[0].levels, settings[0].trials, settings[0].rewind_steps) == ((0, 2), (1,), ("0it", "5it"))
    for flag in ("--trial", "--trials"):
        code, _, err = run(["stability", "run", flag, "a"], capsys)
        assert_one_line_error(code, err, f"{flag} 'a' must be comma-separated integers")


def test_stability_passes_the_execution_flags(monkeypatch, capsys):
    import ticketlab.analysis.stability as stability
    import ticketlab.cli.stability as command

    calls = []
    monkeypatch.setattr(stability, "stability_analysis", lambda run_dir, given, **kwargs: calls.append(kwargs)
                        or SimpleNamespace(rows=[], trained_copies=0, files={}))
    monkeypatch.setattr(command, "check_run_dir", lambda run_dir, needs_config=False: None)
    code, _, err = run(["stability", "run", "--workers", "3", "--population", "4", "--checkpoint-every", "2.5",
                        "--executor", "local"], capsys)
    assert code == 0 and err == []
    assert (calls[0]["workers"], calls[0]["population"], calls[0]["checkpoint_interval_s"]) == (3, 4, 2.5)
    assert run(["stability", "run"], capsys)[0] == 0
    assert (calls[1]["workers"], calls[1]["population"], calls[1]["checkpoint_interval_s"]) == (1, 1, 30.0)


def test_transfer_matrix_output_and_its_other_spelling(tmp_path, capsys):
    for flag in ("--output", "--out"):
        code, _, err = run(["transfer-matrix", str(tmp_path), "--at", "10", flag, " "], capsys)
        assert_one_line_error(code, err, f"{flag} ' ' is empty")


# --- the installed executable ------------------------------------------------------------------------------


def executable() -> list[str]:
    installed = Path(sys.executable).parent / "ticketlab"
    return [str(installed)] if installed.exists() else [sys.executable, "-m", "ticketlab"]


@pytest.mark.parametrize("arguments, expected", [
    (["transfer", "{tmp}", "--levels", "1,x"],
     "ticketlab: error: --levels item 'x' must be a level number >= 0 (e.g. --levels 0,2,4) or 'all'"),
    (["sweep", "--rewinds", "0it,0it", "--root", "{tmp}"], "ticketlab: error: --rewinds lists '0it' more than once"),
    (["sweep", "--rewind", "0it", "--population", "-2", "--root", "{tmp}"],
     "ticketlab: error: --population -2 must be between 1 and 100,000"),
])
def test_executable_bad_input_is_one_line(arguments, expected, tmp_path):
    arguments = [argument.replace("{tmp}", str(tmp_path)) for argument in arguments]
    done = subprocess.run([*executable(), *arguments], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [expected], done.stderr
    assert list(tmp_path.iterdir()) == []


def test_module_entry_points_share_the_parser():
    for entry in (["-m", "ticketlab"], ["-m", "ticketlab.cli"]):
        done = subprocess.run([sys.executable, *entry, "sweep", "--help"], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0 and "--population" in done.stdout and "--rewinds" not in done.stdout
