"""The README's Python examples, saved to files and run as scripts (as a new user would) with tiny settings:
worker processes start with spawn, so a script they re-ran would start the experiment again in each of them."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ticketlab.data.idx import write_idx
from ticketlab.data.mnist import FILE_NAME_BY_KEY

README = Path(__file__).resolve().parents[1] / "README.md"
TINY = {"train.steps": "20it", "train.eval_every": "10it", "prune.levels": 1, "train.batch_size": 50}

# Prepended to each example: tiny Fashion-MNIST files and tensors, and presets shortened to TINY. It runs in
# every process that imports the script (as the README's own lines would).
PRELUDE = '''
import numpy as _np, torch as _torch
import ticketlab as _ticketlab
_tiny = {tiny!r}
_preset = _ticketlab.preset
_ticketlab.preset = lambda name: _preset(name).replace(**{{"data.data_dir": {data_dir!r}, "data.validation_size": 50,
                                                          **_tiny}})
_generator = _torch.Generator().manual_seed(0)
x_train, x_test = _torch.rand(1100, 784, generator=_generator), _torch.rand(100, 784, generator=_generator)
y_train = _torch.randint(0, 10, (1100,), generator=_generator)
y_test = _torch.randint(0, 10, (100,), generator=_generator)
'''

# what each example is given in place of hours of training
SHORTER = {'"prune.rewind": "500it"': '"prune.rewind": "5it"',
           "ticketlab.ExperimentConfig(trials=3)": "ticketlab.ExperimentConfig(trials=3).replace(**_tiny)"}


def readme_python_examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def _fake_fashion_mnist(directory: Path) -> Path:
    rng = np.random.default_rng(0)
    directory.mkdir()
    for key, name in FILE_NAME_BY_KEY.items():
        count = 300 if key.startswith("train") else 100
        write_idx(directory / name, rng.integers(0, 256, (count, 28, 28), dtype=np.uint8) if key.endswith("images")
                  else rng.integers(0, 10, count, dtype=np.uint8))
    return directory


def _script(tmp_path: Path, example: str) -> Path:
    for long, short in SHORTER.items():
        example = example.replace(long, short)
    data_dir = tmp_path / "fashion" if (tmp_path / "fashion").exists() else _fake_fashion_mnist(tmp_path / "fashion")
    path = tmp_path / "example.py"
    path.write_text(PRELUDE.format(tiny=TINY, data_dir=str(data_dir)) + example)
    return path


def _run(script: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script)], cwd=script.parent, capture_output=True, text=True,
                          timeout=600, env=os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(README.parent)})


def test_the_readme_has_its_python_examples_guarded():
    examples = readme_python_examples()
    assert len(examples) >= 2
    for example in examples:
        if "find_tickets(" in example:
            assert 'if __name__ == "__main__":' in example, example


# the first example starts worker processes (slow); its unguarded form below runs in the default suite
@pytest.mark.parametrize("index", [pytest.param(index, marks=pytest.mark.slow) if "workers=" in example else index
                                   for index, example in enumerate(readme_python_examples())])
def test_each_readme_python_example_runs_as_a_script(tmp_path, index):
    done = _run(_script(tmp_path, readme_python_examples()[index]))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "RunLockedError" not in done.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    rows = (run_dir / "results.csv").read_text().splitlines()
    assert len(rows) > 1


def test_the_first_example_without_its_guard_runs_too(tmp_path):
    """A plain script calling find_tickets(workers=2) at its top level: the spawned workers do not run it again."""
    example = readme_python_examples()[0]
    body = example.split('if __name__ == "__main__":', 1)
    unguarded = body[0] + textwrap.dedent(body[1].split("\n", 1)[1])
    assert "workers=2" in unguarded and "if __name__" not in unguarded
    done = _run(_script(tmp_path, unguarded))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RunLockedError" not in done.stderr and "BrokenProcessPool" not in done.stderr
    assert "fashion-mnist_lenet300-100_" in done.stdout
