"""Every command through the console entry point `ticketlab.cli.main` on one tiny finished run: success, and
user errors that end with status 2 and one stderr line (no traceback), with nothing written or trained."""

from __future__ import annotations

import errno
import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ticketlab.cli import main
from ticketlab.errors import ConfigError

TINY = ["--model.hidden", "16,16", "--steps", "40it", "--levels", "2", "--trials", "1", "--data.train_size", "500",
        "--train.eval_every", "20it", "--variants", "iterative_reset,oneshot_reset", "--quiet", "--no-report",
        "--workers", "1"]


@pytest.fixture(scope="module", autouse=True)
def cached_mnist1d_one_thread():
    """MNIST-1D is generated once for the module (it takes seconds), so every command here reads the same arrays;
    torch runs on one thread (tiny networks only wait on each other's threads on a busy machine)."""
    import torch

    import ticketlab.data.mnist1d as mnist1d

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mnist1d, "generate_mnist1d", functools.lru_cache(maxsize=1)(mnist1d.generate_mnist1d))
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """One finished run of the mnist1d preset made tiny (13 s on a busy 2-core machine), built through `main`."""
    root = tmp_path_factory.mktemp("runs")
    assert main(["find", *TINY, "--root", str(root)]) == 0
    (run_dir,) = [path for path in root.iterdir() if path.is_dir()]
    return run_dir


def run(arguments: list[str], capsys) -> tuple[int, str, list[str]]:
    """(exit status, stdout, stderr lines) of one `main` call."""
    code = main(arguments)
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip().splitlines()


def assert_one_line_error(code: int, err: list[str], *fragments: str) -> None:
    assert code == 2, err
    assert len(err) == 1, err
    assert err[0].startswith("ticketlab: error: ") and "Traceback" not in err[0]
    for fragment in fragments:
        assert fragment in err[0], err[0]


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / run_dir.name
    shutil.copytree(run_dir, target)
    return target


# --- find ----------------------------------------------------------------------------------------


def test_find_resumes_a_finished_run_without_training(tiny_run, capsys):
    capsys.readouterr()
    before = (tiny_run / "results.csv").read_text()
    code, out, _ = run(["find", *TINY, "--root", str(tiny_run.parent)], capsys)
    assert code == 0 and f"experiment: {tiny_run}" in out and "iter-reset" in out
    assert (tiny_run / "results.csv").read_text() == before
    rows = before.strip().splitlines()[1:]
    assert len(rows) == 2 * 3  # 2 variants x levels 0..2, the dense row repeated per variant


@pytest.mark.parametrize("extra, fragments", [
    (["--data.train_size", "5000"], ["data.train_size 5000", "3500 training examples"]),
    (["--data.validation_size", "4000"], ["data.validation_size 4000", "4000 training examples"]),
    (["--train.batch_size", "501"], ["train.batch_size 501", "500 training examples"]),
    (["--rewind", "9ep"], ["prune.rewind '9ep'", "train.steps '40it'"]),  # 9 epochs of 5 batches: 45 > 40
    (["--steps", "3ep", "--train.milestones", "20ep", "--train.schedule", "step"], ["train.milestones '20ep'"]),
    (["--prune.layer_rates", "nosuch=0.1"], ["prune.layer_rates names 'nosuch'", "layers.1.weight"]),
])
def test_settings_the_data_cannot_satisfy_are_refused_before_writing(extra, fragments, tmp_path, capsys):
    code, _, err = run(["find", *TINY, *extra, "--root", str(tmp_path)], capsys)
    assert_one_line_error(code, err, *fragments)
    assert list(tmp_path.iterdir()) == []  # no run directory


@pytest.mark.parametrize("extra, fragments", [
    (["--train.lr", "1e300"], ["train.lr 1e+300 must be a number in (0, 100]"]),
    (["--train.gamma", "nan"], ["train.gamma nan"]),
    (["--train.gamma", "-5"], ["train.gamma -5.0"]),
    (["--train.weight_decay", "nan"], ["train.weight_decay nan"]),
    (["--steps", "0it"], ["train.steps '0it' must be at least 1 iteration"]),
    (["--steps", "-5it"], ["invalid step '-5it'"]),
    (["--checkpoint-every", "nan"], ["--checkpoint-every nan"]),
    (["--checkpoint-every", "-1"], ["--checkpoint-every -1.0"]),
    (["--rewind", "500it"], ["prune.rewind '500it' must be before the end of training"]),
    (["--variants", "iterative_reset,iterative_reset"], ["'iterative_reset' more than once"]),
    (["--preset", "mnist1d", "--config", "x.json"], ["--preset and --config cannot be combined"]),
    (["--levels", "1", "--target-remaining", "50"], ["--levels and --target-remaining cannot be combined"]),
    (["--levels", "1", "--prune.levels", "2"], ["--levels and --prune.levels set the same field"]),
    (["--steps", "99999999999999999999it"], ["training iterations, more than 10,000,000,000 iterations",
                                             "--allow-large"]),
    (["--trials", "100000000"], ["100,000,000 trials", "more than 100,000 jobs"]),
    (["--workers", "0"], ["--workers 0 must be between 1 and"]),
    (["--device", "tpu"], ["unknown --device 'tpu'"]),
    (["--task", "vision"], ["unknown task 'vision'; allowed: classification, language"]),
    (["--task", "language"], ["task 'language' does not have data.name 'mnist1d'"]),
    (["--prune.layer_rates", "layers.0.weight"], ["must be NAME=VALUE"]),
])
def test_bad_values_are_refused_before_loading_anything(extra, fragments, tmp_path, capsys):
    root = tmp_path / "runs"
    code, _, err = run(["find", *TINY, *extra, "--root", str(root)], capsys)
    assert_one_line_error(code, err, *fragments)
    assert not root.exists()


def test_allow_large_lifts_the_plan_limit_only(monkeypatch, tmp_path, capsys):
    calls = []
    import ticketlab.lottery.experiment as experiment

    monkeypatch.setattr(experiment, "find_tickets", lambda config, **kwargs: calls.append((config, kwargs)) or 1 / 0)
    with pytest.raises(ZeroDivisionError):  # reached find_tickets: an internal error keeps its traceback
        main(["find", *TINY, "--steps", "99999999999999999999it", "--allow-large", "--root", str(tmp_path)])
    assert calls[0][1]["plan_limit"] is None and calls[0][0].train.steps == "99999999999999999999it"


@pytest.mark.parametrize("make_root, fragments", [
    (lambda tmp: tmp / "file", ["is a file, not a directory"]),
    (lambda tmp: tmp / "file" / "runs", ["not a directory", "file/runs"]),
    (lambda tmp: "", ["--root is empty"]),
])
def test_unusable_roots_are_one_line(make_root, fragments, tmp_path, capsys):
    (tmp_path / "file").write_text("in the way")
    code, _, err = run(["find", *TINY, "--root", str(make_root(tmp_path))], capsys)
    assert_one_line_error(code, err, *fragments)


def test_a_full_disk_names_the_file(monkeypatch, tmp_path, capsys):
    import ticketlab.store as store

    def no_space(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store.os, "fsync", no_space)
    code, _, err = run(["find", *TINY, "--root", str(tmp_path)], capsys)
    assert_one_line_error(code, err, "no space left on device", "config.json", "free some space")


def test_a_diverging_run_is_one_line_and_records_nothing(tmp_path, capsys):
    """NaN weights are refused before result.json is written (they would poison every mask pruned from them)."""
    code, _, err = run(["find", *TINY, "--root", str(tmp_path), "--train.optimizer", "sgd", "--train.lr", "100"],
                       capsys)
    assert_one_line_error(code, err, "training diverged", "train.lr (now 100)")
    level, variant = re.search(r"trial 0 level (\d+) (\w+): training diverged", err[0]).groups()
    (run_dir,) = tmp_path.iterdir()
    assert not (run_dir / "trial_0" / f"level_{int(level):02d}" / variant / "result.json").exists()


def test_debug_variable_shows_the_traceback(monkeypatch, tmp_path):
    monkeypatch.setenv("TICKETLAB_DEBUG", "1")
    with pytest.raises(ConfigError, match="train.gamma nan"):
        main(["find", "--train.gamma", "nan", "--root", str(tmp_path)])


def test_internal_errors_keep_their_traceback(monkeypatch):
    import ticketlab.cli.config as cli

    monkeypatch.setattr(cli, "resolve_config", lambda args: {}["bug"])
    with pytest.raises(KeyError):
        main(["config"])


def test_out_of_memory_is_one_line(monkeypatch, capsys):
    import ticketlab.cli.config as cli

    def allocate(args):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                           "memory: you tried to allocate 3999992000004 bytes. Error code 12")

    monkeypatch.setattr(cli, "resolve_config", allocate)
    code, _, err = run(["config"], capsys)
    assert_one_line_error(code, err, "out of memory (you tried to allocate 3999992000004 bytes)", "model.hidden")


def test_a_damaged_run_directory_file_is_one_line(tiny_run, tmp_path, capsys):
    for name in ("config.json", "population.json"):
        run_dir = copy_run(tiny_run, tmp_path / name)
        (run_dir / name).write_bytes(b"\xff\xfe{garbage")
        code, _, err = run(["find", *TINY, "--root", str(run_dir.parent)], capsys)
        assert_one_line_error(code, err, name, "damaged")


# --- argparse --------------------------------------------------------------------------------------


@pytest.mark.parametrize("arguments, fragment", [
    (["find", "--workers", "abc"], "argument --workers: invalid int value: 'abc' (see ticketlab find --help)"),
    (["find", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["sweep"], "the following arguments are required: --rewind (see ticketlab sweep --help)"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    ([], "the following arguments are required: COMMAND (see ticketlab --help)"),
])
def test_usage_errors_are_one_line_with_a_hint(arguments, fragment, capsys):
    code, _, err = run(arguments, capsys)
    assert_one_line_error(code, err, fragment)


def test_help_shows_the_preset_it_runs(capsys):
    assert main(["find", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "the mnist1d preset runs: the values shown below are its values" in text
    assert "--model.hidden VALUE comma-separated widths, e.g. 256,256 (mnist1d preset: 256,256)" in text
    assert "--train.lr VALUE float (mnist1d preset: 0.01)" in text
    assert "--prune.layer_rates VALUE comma-separated NAME=RATE" in text
    assert "--allow-large" in text and "--task TASK" in text


# --- config, presets -------------------------------------------------------------------------------


def test_config_prints_a_config_find_can_read(tmp_path, capsys):
    code, out, _ = run(["config", "--prune.layer_rates", "layers.0.weight=0.3, layers.2.weight=0.1", "--trials", "3",
                        "--task", "classification"], capsys)
    assert code == 0
    printed = json.loads(out)
    assert printed["prune"]["layer_rates"] == [["layers.0.weight", 0.3], ["layers.2.weight", 0.1]]
    assert printed["trials"] == 3 and printed["task"] == "classification" and printed["model"]["hidden"] == [256, 256]
    path = tmp_path / "c.json"
    path.write_text(out)
    code, again, _ = run(["config", "--config", str(path)], capsys)
    assert code == 0 and json.loads(again) == printed


def test_config_reads_a_run_directorys_config_json(tiny_run, capsys):
    code, out, _ = run(["config", "--config", str(tiny_run / "config.json")], capsys)
    assert code == 0 and json.loads(out)["model"]["hidden"] == [16, 16]


@pytest.mark.parametrize("content, fragments", [
    (b"\xff\xfe\x00garbage", ["is not UTF-8 text"]),
    (b"{not json", ["is not valid JSON"]),
    (b"[" * 100_000, ["nested too deeply"]),
    (b'{"train": {"lr": NaN}}', ["train.lr nan"]),
    (b"[1, 2]", ["must hold a table/object"]),
])
def test_bad_config_files_are_one_line(content, fragments, tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    code, _, err = run(["config", "--config", str(path)], capsys)
    assert_one_line_error(code, err, "bad.json", *fragments)


def test_a_directory_as_config_file_is_one_line(tiny_run, capsys):
    code, _, err = run(["config", "--config", str(tiny_run)], capsys)
    assert_one_line_error(code, err, "is a directory", "its config.json holds the run's config")


def test_presets_lists_every_preset(capsys):
    from ticketlab.presets import PRESETS

    code, out, _ = run(["presets"], capsys)
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == list(PRESETS)


# --- report ----------------------------------------------------------------------------------------


def test_report_draws_the_figures(tiny_run, tmp_path, capsys):
    run_dir = copy_run(tiny_run, tmp_path)
    code, out, err = run(["report", str(run_dir)], capsys)
    assert code == 0 and err == [] and (run_dir / "report" / "lottery.png").is_file() and "markdown:" in out


def test_report_of_a_run_with_a_damaged_weight_file_draws_its_numbers_and_names_the_damage(tiny_run, tmp_path,
                                                                                          capsys):
    """The report shows numbers from sealed result.json files and curves from checked metrics.jsonl files: a
    damaged weight file changes none of them, so the report is drawn, report.html names the damaged file, and one
    warning line says so (verify lists it, find recomputes it)."""
    clean = copy_run(tiny_run, tmp_path / "clean")
    damaged = copy_run(tiny_run, tmp_path / "damaged")
    weights = next(damaged.glob("trial_0/level_01/*/weights_final.safetensors"))
    payload = bytearray(weights.read_bytes())
    payload[-1] ^= 0xFF
    weights.write_bytes(bytes(payload))
    assert run(["report", str(clean)], capsys)[0] == 0
    code, out, err = run(["report", str(damaged)], capsys)
    assert code == 0 and len(err) == 1 and err[0].startswith("ticketlab: warning: 1 damaged file(s)")
    assert (damaged / "report" / "summary.md").read_text().replace(damaged.name, "") == (
        clean / "report" / "summary.md").read_text().replace(clean.name, "")
    page = (damaged / "report.html").read_text()
    assert "damaged" in page and weights.name in page
    assert bytes(payload) == weights.read_bytes()  # the report repairs nothing


def test_report_treats_a_nan_metric_as_missing_with_one_warning(tiny_run, tmp_path, capsys):
    run_dir = copy_run(tiny_run, tmp_path)
    lines = (run_dir / "results.csv").read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[2].split(",")
    cells[header.index("early_stop_test_accuracy")] = "nan"
    lines[2] = ",".join(cells)
    (run_dir / "results.csv").write_text("\n".join(lines) + "\n")
    code, out, err = run(["report", str(run_dir)], capsys)
    assert code == 0 and err == [f"ticketlab: warning: {run_dir / 'results.csv'}:3: column "
                                 "'early_stop_test_accuracy' is 'nan'; treated as missing"]


@pytest.mark.parametrize("damage, fragments", [
    (lambda text: os.urandom(2000), ["is not a results CSV"]),
    (lambda text: text.replace(b"\n", b"\n\x00", 1), ["variant '\\x00iterative_reset' is not a name"]),
    (lambda text: text.replace(b"iterative_reset,0,1,", b"iterative_reset,nan,1,", 1), ["'trial' is not an integer"]),
    (lambda text: text.replace(b",100.0,", b",inf,", 1), ["'weights_remaining_percent' must be a finite number"]),
    (lambda text: text.split(b"\n")[0] + b"\n", ["has no result rows"]),
])
def test_report_refuses_a_damaged_results_csv(damage, fragments, tiny_run, tmp_path, capsys):
    run_dir = copy_run(tiny_run, tmp_path)
    path = run_dir / "results.csv"
    path.write_bytes(damage(path.read_bytes()))
    code, _, err = run(["report", str(run_dir)], capsys)
    assert_one_line_error(code, err, *fragments)


def test_report_of_a_missing_directory(tmp_path, capsys):
    code, _, err = run(["report", str(tmp_path / "nope")], capsys)
    assert_one_line_error(code, err, "does not exist")


# --- stability, masks ------------------------------------------------------------------------------


def test_stability_runs_through_the_entry_point(tiny_run, tmp_path, capsys):
    run_dir = copy_run(tiny_run, tmp_path)
    code, out, err = run(["stability", str(run_dir), "--rewind", "0it", "--levels", "1", "--points", "2",
                          "--train-examples", "200", "--test-examples", "200", "--device", "cpu", "--quiet"], capsys)
    assert code == 0, err
    assert "copies trained now: 4" in out and "barrier_png" in out  # two copies of the dense net and of level 1


def test_masks_runs_through_the_entry_point(tiny_run, tmp_path, capsys):
    run_dir = copy_run(tiny_run, tmp_path)
    code, out, err = run(["masks", str(run_dir)], capsys)
    assert code == 0, err
    assert "iterative_vs_oneshot" in out and (run_dir / "analysis" / "masks" / "mask_overlap.csv").is_file()


@pytest.mark.parametrize("command, extra, fragments", [
    ("stability", ["--points", "1"], ["--points 1 must be between 2 and"]),
    ("stability", ["--rewind", "soon"], ["invalid step 'soon'"]),
    ("stability", ["--levels", "a,b"], ["--levels 'a,b' must be comma-separated integers"]),
    ("stability", ["--variant", "finetune"], ["unknown variant 'finetune'"]),
])
def test_analysis_user_errors(command, extra, fragments, tiny_run, capsys):
    code, _, err = run([command, str(tiny_run), *extra, "--quiet"], capsys)
    assert_one_line_error(code, err, *fragments)


def test_analysis_of_damaged_or_missing_run_directories(tiny_run, tmp_path, capsys):
    code, _, err = run(["masks", str(tmp_path / "missing")], capsys)
    assert_one_line_error(code, err, "does not exist")
    code, _, err = run(["masks", str(tmp_path)], capsys)
    assert_one_line_error(code, err, "no masks in")
    run_dir = copy_run(tiny_run, tmp_path)
    (run_dir / "config.json").write_bytes(b"\xff\x01garbage")
    code, _, err = run(["stability", str(run_dir), "--quiet"], capsys)
    assert_one_line_error(code, err, "config.json", "is not UTF-8 text")
    (run_dir / "config.json").write_text('{"hash": "x", "fingerprint": "", "config": {"train": {"lr": -1}}}')
    code, _, err = run(["stability", str(run_dir), "--quiet"], capsys)
    assert_one_line_error(code, err, "config.json", "train.lr -1")
    next(run_dir.glob("trial_0/level_01/iterative_reset/mask.safetensors")).write_bytes(b"garbage" * 20)
    code, _, err = run(["masks", str(run_dir)], capsys)
    assert_one_line_error(code, err, "mask.safetensors: not a readable safetensors file")


# --- sweep -----------------------------------------------------------------------------------------


def test_sweep_runs_through_the_entry_point(tmp_path, capsys):
    code, out, err = run(["sweep", *TINY, "--levels", "1", "--variants", "iterative_reset", "--rewinds", "0it,20it",
                          "--root", str(tmp_path)], capsys)
    assert code == 0, err
    assert "rewind 0it:" in out and "rewind 20it:" in out and "summary:" in out


@pytest.mark.parametrize("extra, fragments", [
    (["--rewinds", "0it,500it"], ["prune.rewind '500it' must be before the end of training"]),
    (["--rewinds", "0it,0it"], ["--rewinds lists '0it' more than once"]),
    (["--rewinds", ","], ["lists no rewind step"]),
    (["--rewinds", "0it", "--variants", "oneshot_reset"], ["needs the variant 'iterative_reset'"]),
    (["--rewinds", "0it,9ep"], ["prune.rewind '9ep'"]),  # known once the data is: 45 iterations > 40
])
def test_sweep_user_errors(extra, fragments, tmp_path, capsys):
    code, _, err = run(["sweep", *TINY, *extra, "--root", str(tmp_path)], capsys)
    assert_one_line_error(code, err, *fragments)
    assert not any(path.is_dir() for path in tmp_path.iterdir())


# --- the installed executable ----------------------------------------------------------------------


def executable() -> list[str]:
    installed = Path(sys.executable).parent / "ticketlab"
    return [str(installed)] if installed.exists() else [sys.executable, "-m", "ticketlab.cli"]


def test_executable_user_error_is_one_line(tmp_path):
    done = subprocess.run([*executable(), "find", "--train.gamma", "nan", "--root", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "ticketlab: error: train.gamma nan must be a finite number > 0"]


def test_executable_debug_variable_prints_the_traceback(tmp_path):
    done = subprocess.run([*executable(), "config", "--train.lr", "-1"], capture_output=True, text=True, timeout=120,
                          env=os.environ | {"TICKETLAB_DEBUG": "1"})
    assert done.returncode == 1 and "Traceback" in done.stderr and "ConfigError: train.lr -1.0" in done.stderr


def test_executable_masks_on_a_run(tiny_run, tmp_path):
    run_dir = copy_run(tiny_run, tmp_path)
    done = subprocess.run([*executable(), "masks", str(run_dir)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "iterative_vs_oneshot" in done.stdout
