"""find_tickets called at a script's top level, without an `if __name__ == "__main__":` guard: the spawned worker
processes must not run the script again (they did: three RunLockedError tracebacks and a BrokenProcessPool).
tests/test_docs.py runs every example of the README and the docs exactly as shown; this checks what the guard
in those examples is not there to prevent."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

UNGUARDED = '''
import ticketlab

config = ticketlab.preset("mnist1d").replace(
    trials=2, variants="iterative_reset", **{"train.steps": "40it", "train.eval_every": "20it", "prune.levels": 1,
                                             "data.train_size": 500})
result = ticketlab.find_tickets(config, root="runs", workers=2, progress=False, report=False)
print("run:", result.run_dir.name)
'''


def test_examples_that_start_workers_are_guarded():
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    for document in documents:
        for example in re.findall(r"```python\n(.*?)```", document.read_text(encoding="utf-8"), flags=re.S):
            if "workers=" in example:
                assert 'if __name__ == "__main__":' in example, f"{document}: {example}"


def test_a_script_without_the_guard_runs_with_worker_processes(tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED)
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env=os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RunLockedError" not in done.stderr and "BrokenProcessPool" not in done.stderr
    assert "run: mnist1d_mlp_" in done.stdout
    assert len((next((tmp_path / "runs").iterdir()) / "results.csv").read_text().splitlines()) == 1 + 2 * 2
