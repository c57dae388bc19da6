"""The public entry points (ticketlab.api) run the lottery function and then the report layer: the lottery layer
never imports the report; it calls `on_finished` with the run directory, under the run lock, once results.csv is
complete."""

import pytest

import ticketlab
from ticketlab import api
from ticketlab.config import ExperimentConfig, ModelConfig, PruneConfig, TrainConfig
from ticketlab.errors import RunLockedError
from ticketlab.lottery import experiment
from ticketlab.lottery.results_csv import read_results


def _config():
    return ExperimentConfig(model=ModelConfig(name="mlp", hidden=(8,)),
                            train=TrainConfig(batch_size=50, steps="6it", eval_every="3it"),
                            prune=PruneConfig(rate=0.5, levels=1), variants=("iterative_reset",))


def test_the_package_names_are_the_interface_functions():
    assert ticketlab.find_tickets is api.find_tickets
    assert ticketlab.transfer_tickets is api.transfer_tickets


def test_on_finished_runs_under_the_lock_after_results_csv(tmp_path, tiny_data):
    seen = []

    def on_finished(run_dir):
        with pytest.raises(RunLockedError):  # still held: another process could not start training here
            _lock_from_another_process(run_dir)
        seen.append(len(read_results(run_dir / "results.csv")))  # dense + level 1 of iterative_reset
        return {"marker": run_dir / "marker"}

    result = experiment.find_tickets(_config(), root=tmp_path, data=tiny_data, progress=False,
                                     on_finished=on_finished)
    assert seen == [2] and result.report_files == {"marker": result.run_dir / "marker"}
    assert not (result.run_dir / "report").exists()  # the lottery layer draws nothing itself

    plain = experiment.find_tickets(_config(), root=tmp_path, data=tiny_data, progress=False)
    assert plain.report_files == {} and plain.rows == result.rows  # finished: nothing trained again

    drawn = api.find_tickets(_config(), root=tmp_path, data=tiny_data, progress=False)
    assert drawn.rows == result.rows and drawn.report_files["html"] == result.run_dir / "report.html"
    assert all(path.is_file() for path in drawn.report_files.values())


def _lock_from_another_process(run_dir):
    import subprocess
    import sys

    code = (f"from ticketlab.lottery.run_lock import run_lock\nwith run_lock({str(run_dir)!r}): pass")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if "RunLockedError" in done.stderr:
        raise RunLockedError(done.stderr.strip().splitlines()[-1])
    assert done.returncode == 0, done.stderr
