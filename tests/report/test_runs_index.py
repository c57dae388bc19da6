"""`ticketlab runs`: finished, partial and damaged runs under a root, newest first, as text and JSON; torch-free."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from ticketlab.cli import main


def _root_with_three_runs(tiny_run, tmp_path):
    root = tmp_path / "root"
    finished = shutil.copytree(tiny_run, root / "finished")
    partial = shutil.copytree(tiny_run, root / "sweep" / "partial")  # nested one folder deeper
    for level in ("level_01", "level_02"):
        (partial / "trial_1" / level / "random_pruning" / "result.json").unlink()
    damaged = shutil.copytree(tiny_run, root / "damaged")
    mask = damaged / "trial_0" / "level_02" / "iterative_reset" / "mask.safetensors"
    mask.write_bytes(mask.read_bytes()[:-4] + b"\0\0\0\0")
    for age, run in enumerate((damaged, partial, finished)):  # damaged newest, finished oldest
        for folder, _, files in os.walk(run):
            for name in files:
                os.utime(os.path.join(folder, name), (1.7e9 - 3600 * age, 1.7e9 - 3600 * age))
    return root


def test_runs_json_states_and_order(tiny_run, tmp_path, capsys):
    root = _root_with_three_runs(tiny_run, tmp_path)
    assert main(["runs", str(root), "--json"]) == 0
    index = json.loads(capsys.readouterr().out)
    assert [entry["run_dir"] for entry in index] == [str(root / "damaged"), str(root / "sweep" / "partial"),
                                                      str(root / "finished")]
    damaged, partial, finished = index
    assert damaged["state"] == "damaged" and any("mask.safetensors" in line for line in damaged["damage"])
    assert partial["state"] == "partial" and partial["jobs_left"] == 2 and partial["jobs_done"] == 8
    assert finished["state"] == "finished" and finished["jobs_planned"] == 10 and finished["jobs_left"] == 0
    assert finished["levels_done"] == finished["levels_planned"] == 2
    assert finished["task"] == "classification" and finished["trials"] == 2
    assert finished["variants"] == ["iterative_reset", "random_pruning"]
    total = sum(path.stat().st_size for path in (root / "finished").rglob("*") if path.is_file())
    assert finished["size_bytes"] == total


def test_runs_text_table(tiny_run, tmp_path, capsys):
    root = _root_with_three_runs(tiny_run, tmp_path)
    assert main(["runs", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["run", "task", "config"]
    assert lines[1].startswith("damaged ") and "damaged (1 file)" in lines[1]
    assert lines[2].startswith("sweep/partial ") and "partial (2 jobs left)" in lines[2]
    assert lines[3].startswith("finished ") and " 2/2 " in lines[3] and "mlp on custom:tensors, 40it" in lines[3]


def test_runs_of_a_missing_root_is_one_line(tmp_path, capsys):
    assert main(["runs", str(tmp_path / "nowhere")]) == 2
    expected = f"ticketlab: error: runs root {str(tmp_path / 'nowhere')!r} does not exist"
    assert capsys.readouterr().err.strip() == expected


def test_runs_imports_no_torch(tiny_run):
    code = ("import sys; from ticketlab.cli import main; "
            f"status = main(['runs', {str(tiny_run.parent)!r}, '--json']); "
            "assert status == 0; assert 'torch' not in sys.modules, 'torch imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["state"] == "finished"
