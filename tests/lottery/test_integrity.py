"""Fault injection on tiny runs: damaged artifacts are detected and recomputed (results equal a clean run's),
checkpoints and masks that do not parse are set aside, `ticketlab verify` reports damage, one process writes a
run directory at a time, and a run is never resumed with another population size or device."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ticketlab.cli import main
from ticketlab.config import ExperimentConfig, ModelConfig, PruneConfig, TrainConfig
from ticketlab.errors import ConfigError, IntegrityError, TicketlabError
from ticketlab.api import find_tickets
from ticketlab.lottery.experiment import model_factory
from ticketlab.lottery.integrity import record_digest, verify_run
from ticketlab.lottery.run_lock import LOCK_FILE, run_lock
from ticketlab.lottery.context import ExperimentContext
from ticketlab.lottery.jobs import prepare_job
from ticketlab.lottery.keys import DENSE, JobKey
from ticketlab.lottery.masks import job_mask
from ticketlab.lottery.planner import PLAN_FILE, settle_run_settings
from ticketlab.store import read_json, read_jsonl, save_tensors
from ticketlab.training.loop import CHECKPOINT_FILE, TrainingInterrupted, train_model

VARIANTS = ("iterative_reset", "random_pruning", "oneshot_reset")
IR1, IR2 = JobKey(0, 1, "iterative_reset"), JobKey(0, 2, "iterative_reset")


def _config(**changes):
    config = ExperimentConfig(
        model=ModelConfig(name="mlp", hidden=(16, 16)),
        train=TrainConfig(optimizer="adam", lr=5e-3, batch_size=50, steps="40it", eval_every="20it"),
        prune=PruneConfig(rate=0.5, output_rate=0.25, levels=2),
        variants=VARIANTS,
        trials=1,
    )
    return config.replace(**changes) if changes else config


def _find(root, data, population=1):
    return find_tickets(_config(), root=root, data=data, progress=False, report=False, population=population)


@pytest.fixture(scope="module")
def clean(tmp_path_factory, tiny_data_for_module):
    """A finished clean run (population 1, the exact reference path): (result, data, results.csv text).

    The module's tests train on one thread: jobs this small only lose time to thread hand-offs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    data = tiny_data_for_module
    result = _find(tmp_path_factory.mktemp("clean"), data)
    yield result, data, (result.run_dir / "results.csv").read_text()
    torch.set_num_threads(threads)


def _copy(clean, tmp_path) -> Path:
    """A copy of the clean run under tmp_path (the same run-directory name), to damage."""
    result = clean[0]
    target = tmp_path / result.run_dir.name
    shutil.copytree(result.run_dir, target)
    return target


def _context(run_dir, data) -> ExperimentContext:
    config = _config().validate()
    return ExperimentContext(config=config, run_dir=run_dir, data=data, make_model=model_factory(config, data, None))


def _flip_last_byte(path: Path) -> None:
    payload = bytearray(path.read_bytes())
    payload[-1] ^= 0x01  # a bit of the last tensor's bytes: the file still parses
    path.write_bytes(bytes(payload))


def _set_aside(run_dir: Path, pattern: str) -> list[Path]:
    return sorted(run_dir.glob(f"trial_*/level_*/*/{pattern}"))


def _assert_same_results_as_clean(clean, rerun) -> None:
    result, _, csv_text = clean
    assert rerun.rows == result.rows
    assert (rerun.run_dir / "results.csv").read_text() == csv_text
    assert verify_run(rerun.run_dir) == []


def test_result_json_records_artifact_hashes_and_a_digest_of_its_numbers(clean, capsys):
    result = clean[0]
    for job_dir in _set_aside(result.run_dir, "result.json"):
        record = json.loads(job_dir.read_text())
        job_dir = job_dir.parent
        names = {"mask.safetensors", "weights_init.safetensors", "weights_final.safetensors", "metrics.jsonl"}
        assert set(record["artifacts"]) == names
        for name, digest in record["artifacts"].items():
            assert digest == hashlib.sha256((job_dir / name).read_bytes()).hexdigest()
        rest = {key: value for key, value in record.items() if key != "digest"}
        assert record["digest"] == hashlib.sha256(json.dumps(rest, sort_keys=True, separators=(",", ":"))
                                                  .encode()).hexdigest() == record_digest(record)
    assert verify_run(result.run_dir) == []
    assert main(["verify", str(result.run_dir)]) == 0
    assert "clean (7 job directories verified)" in capsys.readouterr().out


def test_flipped_bits_in_a_finished_parent_recompute_it_and_its_dependants(clean, tmp_path, capsys):
    run_dir = _copy(clean, tmp_path)
    _flip_last_byte(IR1.directory(run_dir) / "weights_final.safetensors")
    damage = verify_run(run_dir)
    assert [(item.path, item.problem) for item in damage] == [
        (IR1.directory(run_dir) / "weights_final.safetensors", "differs from the sha256 recorded in result.json")]
    assert main(["verify", str(run_dir)]) == 1
    assert capsys.readouterr().out.startswith(f"{IR1.directory(run_dir) / 'weights_final.safetensors'}: differs")

    rerun = _find(tmp_path, clean[1])
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == ["ticketlab: warning: trial 0 level 1 iterative_reset is damaged (weights_final.safetensors: "
                        "differs from the sha256 recorded in result.json); set aside, recomputing it and the 3 jobs "
                        "that depend on it"]
    recomputed = {path.parent.relative_to(run_dir).as_posix() for path in _set_aside(run_dir, "result.corrupt-*")}
    # random_pruning copies the level's ticket counts; the one-shot jobs read only the dense network
    assert recomputed == {"trial_0/level_01/iterative_reset", "trial_0/level_01/random_pruning",
                          "trial_0/level_02/iterative_reset", "trial_0/level_02/random_pruning"}
    assert [path.parent for path in _set_aside(run_dir, "weights_final.corrupt-*")] == [IR1.directory(run_dir)]
    _assert_same_results_as_clean(clean, rerun)


def test_an_edited_number_in_result_json_never_reaches_results_csv(clean, tmp_path, capsys):
    run_dir = _copy(clean, tmp_path)
    path = IR2.directory(run_dir) / "result.json"
    record = json.loads(path.read_text())
    record["early_stop_test_accuracy"] = 0.999
    path.write_text(json.dumps(record))
    assert [item.problem for item in verify_run(run_dir)] == [
        "its numbers differ from its recorded digest (edited or damaged)"]
    rerun = _find(tmp_path, clean[1])
    assert "trial 0 level 2 iterative_reset is damaged (result.json: its numbers differ" in capsys.readouterr().err
    _assert_same_results_as_clean(clean, rerun)


def test_a_truncated_result_json_is_recomputed_not_a_traceback_forever(clean, tmp_path, capsys):
    run_dir = _copy(clean, tmp_path)
    path = JobKey(0, 0, DENSE).directory(run_dir) / "result.json"
    path.write_bytes(path.read_bytes()[:100])
    assert "result.json: not readable JSON" in str(verify_run(run_dir)[0])
    rerun = _find(tmp_path, clean[1])
    assert "the 6 jobs that depend on it" in capsys.readouterr().err  # everything depends on the dense network
    _assert_same_results_as_clean(clean, rerun)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_checkpoint_is_set_aside_and_the_job_restarts(clean, tmp_path, capsys, damage):
    run_dir = _copy(clean, tmp_path)
    job_dir = IR2.directory(run_dir)
    for name in ("result.json", "weights_final.safetensors", "metrics.jsonl"):  # the job was killed mid-training
        (job_dir / name).unlink()
    ctx = _context(run_dir, clean[1])
    start = prepare_job(ctx, IR2)
    with pytest.raises(TrainingInterrupted):
        train_model(start.model, ctx.data, ctx.config.train, masks=start.mask, data_seed=start.data_seed,
                    job_dir=job_dir, checkpoint_interval_s=0, stop_after_step=30)
    checkpoint = job_dir / CHECKPOINT_FILE
    if damage == "truncate":
        checkpoint.write_bytes(checkpoint.read_bytes()[:-100])
    else:
        _flip_last_byte(checkpoint)
    assert [item.path.name for item in verify_run(run_dir)] == [CHECKPOINT_FILE]

    rerun = _find(tmp_path, clean[1])
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "the job restarts from its start (moved to checkpoint.corrupt-" in warnings[0]
    assert [path.name[:19] for path in job_dir.glob("checkpoint*")] == ["checkpoint.corrupt-"]
    _assert_same_results_as_clean(clean, rerun)


def test_a_garbage_mask_of_an_unfinished_job_is_computed_again(clean, tmp_path, capsys):
    run_dir = _copy(clean, tmp_path)
    job_dir = IR2.directory(run_dir)
    for name in ("result.json", "weights_final.safetensors", "metrics.jsonl"):
        (job_dir / name).unlink()
    (job_dir / "mask.safetensors").write_bytes(os.urandom(300))
    rerun = _find(tmp_path, clean[1])
    assert "computing the mask again (moved to mask.corrupt-" in capsys.readouterr().err
    _assert_same_results_as_clean(clean, rerun)


def test_a_stored_mask_is_reused_and_never_recomputed(clean, tmp_path):
    """A mask that verifies is the one the job uses (computed once): a different valid mask stored for an
    unfinished job is taken as it is."""
    run_dir = _copy(clean, tmp_path)
    (IR2.directory(run_dir) / "result.json").unlink()
    ctx = _context(run_dir, clean[1])
    ones = {name: value.bool() | True for name, value in job_mask(ctx, IR2).items()}
    save_tensors(IR2.directory(run_dir) / "mask.safetensors", ones)
    assert all(bool(value.all()) for value in job_mask(ctx, IR2).values())


def test_two_processes_on_one_run_directory(clean, tmp_path):
    """The second `ticketlab find` on a run directory another process trains exits at once with one line naming
    the holder's PID; the first finishes with no duplicated or out-of-order metrics rows."""
    command = [sys.executable, "-m", "ticketlab.cli", "find", "--root", str(tmp_path), "--trials", "1", "--levels", "2",
               "--steps", "40it", "--train.eval_every", "10it", "--model.hidden", "16,16", "--data.train_size", "500",
               "--data.validation_size", "100", "--variants", "iterative_reset,random_pruning", "--quiet",
               "--no-report", "--workers", "1"]
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2]), "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment, text=True)
    try:
        deadline = time.monotonic() + 120
        locks = []
        while not locks or locks[0].read_text().strip() != str(first.pid):  # the first holds the lock...
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.05)
            locks = list(tmp_path.glob(f"*/{LOCK_FILE}"))
        os.kill(first.pid, signal.SIGSTOP)  # ... and stays in the middle of its run while the second starts
        try:
            second = subprocess.run(command, capture_output=True, env=environment, text=True, timeout=120)
        finally:
            os.kill(first.pid, signal.SIGCONT)
        assert second.returncode == 2
        assert second.stderr.splitlines()[-1] == (
            f"ticketlab: error: run directory {locks[0].parent} is in use by process {first.pid}; wait for it to "
            "finish or stop it, then run the command again (it resumes where that process stopped)")
        _, stderr = first.communicate(timeout=300)
        assert first.returncode == 0, stderr
    finally:
        if first.poll() is None:
            first.kill()
    run_dir = locks[0].parent
    metrics = list(run_dir.glob("trial_*/level_*/*/metrics.jsonl"))
    assert len(metrics) == 5
    for path in metrics:
        assert [row["step"] for row in read_jsonl(path)] == list(range(10, 41, 10)), path
    assert verify_run(run_dir) == []


def test_the_lock_is_shared_within_a_process_and_released_after(tmp_path):
    with run_lock(tmp_path):
        with run_lock(tmp_path):  # nested: the rewind sweep around find_tickets
            pass
        code = f"from ticketlab.lottery.run_lock import run_lock\nwith run_lock({str(tmp_path)!r}): pass"
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
        assert other.returncode == 1 and f"is in use by process {os.getpid()};" in other.stderr
        assert "RunLockedError" in other.stderr
    with run_lock(tmp_path):  # released
        pass


def test_a_run_keeps_its_population_size_and_device(clean, tmp_path, tiny_data):
    result = clean[0]
    assert read_json(result.run_dir / PLAN_FILE) == {"population": 1, "device": "cpu"}
    run_dir = _copy(clean, tmp_path)
    with pytest.raises(ConfigError, match=r"was trained with --population 1, this run asks for --population 8; "
                                          r"use --population 1 \(or leave it out\), or a new --root"):
        _find(tmp_path, tiny_data, population=8)
    rerun = _find(tmp_path, tiny_data, population=None)  # the automatic size takes the stored one
    assert rerun.rows == result.rows and rerun.run_dir == run_dir

    ctx = _context(tmp_path / "other", tiny_data)
    model = ctx.make_model(0)
    settle_run_settings(ctx, model, None)  # automatic: stacks this MLP, the size resolved and stored
    stored = read_json(ctx.run_dir / PLAN_FILE)
    assert stored["device"] == "cpu" and stored["population"] > 1
    settle_run_settings(ctx, model, None)
    settle_run_settings(ctx, model, stored["population"])
    with pytest.raises(ConfigError, match=f"trained with --population {stored['population']}, this run asks for "
                                          "--population 1"):
        settle_run_settings(ctx, model, 1)
    (ctx.run_dir / PLAN_FILE).write_text(json.dumps({"population": 4, "device": "cuda"}))
    with pytest.raises(ConfigError, match="was trained on cuda, this run would train on cpu; use --device cuda, or a "
                                          "new --root"):
        settle_run_settings(ctx, model, None)
    (ctx.run_dir / PLAN_FILE).write_text("{\"popul")
    with pytest.raises(IntegrityError, match="population.json is damaged"):
        settle_run_settings(ctx, model, None)


def test_verify_reports_every_damaged_file_and_needs_a_run_directory(clean, tmp_path, capsys):
    run_dir = _copy(clean, tmp_path)
    (run_dir / "config.json").write_text("{")
    _flip_last_byte(JobKey(0, 1, "oneshot_reset").directory(run_dir) / "mask.safetensors")
    (JobKey(0, 2, "oneshot_reset").directory(run_dir) / "metrics.jsonl").unlink()
    assert main(["verify", str(run_dir)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{run_dir / 'config.json'}: not a readable run config")
    assert lines[1:] == [
        f"{JobKey(0, 1, 'oneshot_reset').directory(run_dir) / 'mask.safetensors'}: differs from the sha256 recorded "
        "in result.json",
        f"{JobKey(0, 2, 'oneshot_reset').directory(run_dir) / 'metrics.jsonl'}: missing",
    ]
    assert main(["verify", str(tmp_path / "nothing")]) == 2
    assert "is not a run directory" in capsys.readouterr().err
    with pytest.raises(TicketlabError):
        verify_run(tmp_path / "nothing")


# --- every command reads a run through the checked reader; file modes (issue 24) ---------------------------------


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ticketlab: error: ") and "Traceback" not in captured.err, lines
    return lines[0]


def test_the_checked_reader_names_damaged_files(clean, tmp_path):
    from ticketlab.lottery.integrity import read_finished_job, read_finished_jobs, read_run_config

    run_dir = _copy(clean, tmp_path)
    assert read_run_config(run_dir).hash() == read_json(run_dir / "config.json")["hash"]
    assert sorted(read_finished_jobs(run_dir)) == sorted(path.parent for path in _set_aside(run_dir, "result.json"))
    _flip_last_byte(IR1.directory(run_dir) / "mask.safetensors")
    (IR2.directory(run_dir) / "metrics.jsonl").unlink()
    with pytest.raises(IntegrityError, match=r"^damaged run files: .*level_01/iterative_reset/mask.safetensors: "
                                             r"differs from the sha256 recorded in result.json; .*level_02/"
                                             r"iterative_reset/metrics.jsonl: missing; `ticketlab verify RUN_DIR` "
                                             r"lists the damage"):
        read_finished_jobs(run_dir)
    with pytest.raises(IntegrityError, match="mask.safetensors: differs"):
        read_finished_job(IR1.directory(run_dir))
    assert read_finished_job(JobKey(0, 0, DENSE).directory(run_dir))["level"] == 0
    stored = read_json(run_dir / "config.json")
    stored["config"]["train"]["lr"] = 0.5
    (run_dir / "config.json").write_text(json.dumps(stored))
    with pytest.raises(IntegrityError, match="config.json: its config does not hash to its recorded hash"):
        read_run_config(run_dir)
    with pytest.raises(TicketlabError, match="is not a run directory"):
        read_run_config(tmp_path / "nothing")


def test_report_and_verify_check_results_csv_against_the_sealed_results(clean, tmp_path, capsys):
    run_dir = _copy(clean, tmp_path)
    assert main(["report", str(run_dir)]) == 0
    capsys.readouterr()
    text = (run_dir / "results.csv").read_text()
    lines = text.splitlines()
    row = lines[2].split(",")  # iterative_reset, level 1
    row[5] = str(float(row[5]) + 0.01)  # early_stop_test_accuracy
    (run_dir / "results.csv").write_text("\n".join([*lines[:2], ",".join(row), *lines[3:]]) + "\n")
    assert main(["report", str(run_dir)]) == 2
    assert "early_stop_test_accuracy of trial 0 level 1 iterative_reset" in _one_error_line(capsys)
    assert main(["verify", str(run_dir)]) == 1
    assert capsys.readouterr().out.startswith(f"{run_dir / 'results.csv'}: ")
    (run_dir / "results.csv").write_text("\n".join(lines[:-1]) + "\n")  # the last row lost
    assert main(["report", str(run_dir)]) == 2
    assert "no row for trial 0" in _one_error_line(capsys)
    (run_dir / "results.csv").write_text(text)
    (run_dir / "config.json").unlink()
    assert main(["verify", str(run_dir)]) == 1
    assert capsys.readouterr().out.startswith(f"{run_dir / 'config.json'}: missing")


def test_masks_refuses_a_damaged_run_in_one_line(clean, tmp_path, capsys):
    run_dir = _copy(clean, tmp_path)
    (IR2.directory(run_dir) / "mask.safetensors").unlink()
    assert main(["masks", str(run_dir)]) == 2
    assert "mask.safetensors: missing" in _one_error_line(capsys)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_files_get_the_umasks_mode_not_0600(tmp_path, umask):
    from ticketlab.store import atomic_write_bytes, write_json
    from ticketlab.store import atomic_write_bytes as write_report_file

    previous = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        write_json(tmp_path / "b.json", {"x": 1})
        save_tensors(tmp_path / "c.safetensors", {"w": torch.ones(2)})
        write_report_file(tmp_path / "d.md", b"x")
    finally:
        os.umask(previous)
    assert {path.name: path.stat().st_mode & 0o777 for path in tmp_path.iterdir()} == {
        name: 0o666 & ~umask for name in ("a.bin", "b.json", "c.safetensors", "d.md")}


def test_a_finished_runs_files_are_readable_by_the_group(clean):
    umask = os.umask(0)
    os.umask(umask)
    modes = {path.name: path.stat().st_mode & 0o777 for path in clean[0].run_dir.rglob("*") if path.is_file()}
    assert set(modes.values()) == {0o666 & ~umask & 0o644 | 0o666 & ~umask}, modes
