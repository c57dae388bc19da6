"""Run a corpus of ~200 bad inputs through the installed `ticketlab` executable and count how each ends.

    .venv/bin/python benchmarks/bad_inputs.py [--jobs 2] [--timeout 180] [--only CLASS] [--show]

Each case runs in a fresh directory with a timeout. Outcomes: good (status 2 and exactly one `ticketlab: error:`
line on stderr; for the few cases that are meant to succeed with a warning: status 0 and warning lines only),
traceback, accepted (status 0 where an error was due), hang (timed out), other (anything else, e.g. two lines).
Settings are tiny (MLP 16-16, 40 iterations, 2 levels, 500 examples) so a wrongly accepted case ends quickly.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

TINY = ["--model.hidden", "16,16", "--steps", "40it", "--levels", "2", "--trials", "1", "--data.train_size", "500",
        "--train.eval_every", "20it", "--variants", "iterative_reset,oneshot_reset", "--quiet", "--no-report",
        "--workers", "1"]


@dataclass
class Case:
    kind: str  # values, inconsistent, paths, run files, size, argparse
    argv: list[str]  # after the executable; {RUN} is a copy of the tiny run, {TMP} the case's directory
    expect: str = "error"  # or "warning": status 0 with warning lines only
    damage: tuple[str, bytes] | None = None  # (file in the run copy, new content)
    file_limit: int | None = None  # RLIMIT_FSIZE in bytes: writes beyond it fail (a full disk)
    files: dict[str, bytes] = field(default_factory=dict)  # files to create in {TMP}


def find(*extra: str) -> list[str]:
    return ["find", *TINY, *extra, "--root", "{TMP}/runs"]


def corpus() -> list[Case]:
    cases: list[Case] = []

    def add(kind, argv, **options):
        cases.append(Case(kind, argv, **options))

    # --- values: type, finiteness, range of every field and flag
    bad_values = {
        "train.lr": ["1e300", "nan", "inf", "-1", "0", "abc", "101"],
        "train.gamma": ["nan", "-5", "0", "inf", "x"],
        "train.weight_decay": ["nan", "-1", "2", "inf"],
        "train.clip_grad_norm": ["0", "-1", "nan"],
        "train.batch_size": ["0", "-1", "1.5", "abc"],
        "train.eval_every": ["0it", "x", "-1it"],
        "train.warmup": ["-1it", "soon"],
        "train.optimizer": ["lion"], "train.schedule": ["exp"],
        "prune.rate": ["0", "1", "1.5", "nan", "-0.2"],
        "prune.output_rate": ["1", "nan"],
        "prune.scope": ["local"], "prune.strategy": ["gradient"],
        "prune.finetune_steps": ["0it", "x"],
        "prune.layer_rates": ["a", "a=x", "layers.0.weight=2", "a=0.3,a=0.2", "nosuchlayer=0.3"],
        "model.hidden": ["0", "-1", "abc", "10000000", "16,,0"],
        "model.dropout": ["1", "-0.1", "nan"],
        "model.name": ["resnet9000"], "model.init": ["zeros"], "model.width": ["8"],
        "model.embedding_dim": ["0"], "model.tie_weights": ["maybe"],
        "data.name": ["imagenet"], "data.validation_size": ["0", "-1"], "data.train_size": ["0", "-5"],
        "data.sequence_length": ["0"], "data.augment": ["perhaps"], "train.nesterov": ["2"],
    }
    for name, values in bad_values.items():
        for value in values:
            add("values", find(f"--{name}", value))
    for flag, values in {"--steps": ["0it", "ten", "1.5it", "", "-5it", "5 epochs"], "--trials": ["0", "-1", "x"],
                         "--seed": ["1.5", "x"], "--variants": ["lucky", "", ","], "--task": ["vision"],
                         "--levels": ["-1", "x"], "--target-remaining": ["0", "150", "nan", "-5"],
                         "--rewind": ["soon", "-1it"], "--workers": ["0", "-1", "100000"],
                         "--population": ["0", "-3"], "--checkpoint-every": ["nan", "-1", "inf"],
                         "--device": ["tpu", "cuda:x", "gpu0"]}.items():
        for value in values:
            add("values", find(flag, value) if flag != "--target-remaining" else
                [arg for arg in find(flag, value) if arg not in ("--levels", "2")])
    for value in ["1e300", "nan", "-1"]:
        add("values", ["config", "--train.lr", value])
    add("values", ["config", "--prune.rate", "nan"])

    # --- inconsistent settings
    inconsistent = [
        ["--rewind", "500it"], ["--rewind", "40it"], ["--rewind", "9ep"], ["--variants", "iterative_reset,iterative_reset"],
        ["--preset", "mnist1d", "--config", "{TMP}/c.json"], ["--target-remaining", "50"],
        ["--levels", "3", "--prune.levels", "3"], ["--data.train_size", "5000"], ["--data.validation_size", "4000"],
        ["--train.batch_size", "100000"], ["--train.batch_size", "501"],
        ["--train.schedule", "step", "--train.milestones", "500it"], ["--train.milestones", "20it"],
        ["--train.warmup", "41it"], ["--train.nesterov", "true"], ["--train.momentum", "0.9"],
        ["--train.optimizer", "sgd", "--train.momentum", "0.9", "--train.nesterov", "true", "--train.optimizer", "adam"],
        ["--steps", "3ep", "--rewind", "20ep"], ["--steps", "2ep", "--train.warmup", "11it"],
        ["--task", "language"], ["--model.name", "lstm"], ["--data.name", "wikitext2"],
        ["--model.name", "resnet20", "--model.depth", "21"], ["--model.name", "vgg19", "--model.depth", "12"],
        ["--model.name", "conv4", "--model.depth", "3"],
    ]
    for extra in inconsistent:
        add("inconsistent", find(*extra), files={"c.json": b"{}"})
    for extra in (["--rewinds", "0it,0it"], ["--rewinds", "0it,500it"], ["--rewinds", ","],
                  ["--rewinds", "0it", "--variants", "oneshot_reset"], ["--rewinds", "0it,9ep"]):
        add("inconsistent", ["sweep", *TINY, *extra, "--root", "{TMP}/runs"])

    # --- paths
    add("paths", ["find", *TINY, "--root", "{TMP}/file"], files={"file": b"x"})
    add("paths", ["find", *TINY, "--root", "{TMP}/file/runs"], files={"file": b"x"})
    add("paths", ["find", *TINY, "--root", ""])
    add("paths", ["find", *TINY, "--root", "/proc/ticketlab-runs"])
    add("paths", ["find", *TINY, "--root", "/sys/ticketlab-runs"])
    add("paths", ["find", *TINY, "--root", "/proc/self/status/runs"])
    add("paths", find(), file_limit=1000)  # a full disk at config.json
    add("paths", ["report", "{RUN}"], file_limit=2000)  # a full disk at the figure
    add("paths", ["sweep", *TINY, "--rewinds", "0it", "--root", "{TMP}/runs"], file_limit=1000)
    config_files = {
        "dir.json": None, "missing.json": None, "latin1.json": b'{"seed": "\xe9"}', "empty.json": b"",
        "c.txt": b"{}", "bad.toml": b"[train\nlr = ", "deep.json": b"[" * 100_000, "nan.json": b'{"train": {"lr": NaN}}',
        "typo.json": b'{"train": {"learning_rate": 0.1}}', "list.json": b"[1, 2]", "binary.json": os.urandom(300),
        "huge_int.json": b'{"trials": ' + b"9" * 5000 + b"}", "section.json": b'{"train": 5}',
        "bom.toml": b"\xef\xbb\xbfseed = 1\n[train]\nlr = 'x'\n",
    }
    for name, content in config_files.items():
        files = {} if content is None else {name: content}
        if name == "dir.json":
            files = {"dir.json/x": b""}
        add("paths", ["config", "--config", f"{{TMP}}/{name}"], files=files)
        add("paths", ["find", "--config", f"{{TMP}}/{name}", "--root", "{TMP}/runs", "--quiet"], files=files)
    add("paths", find("--data-dir", "/no/such/dir"))
    add("paths", find("--data-dir", "{TMP}/file"), files={"file": b"x"})
    add("paths", ["find", "--preset", "lenet_mnist", "--data-dir", "{TMP}/empty", "--root", "{TMP}/runs", "--quiet"],
        files={"empty/.keep": b""})
    for command in ("report", "stability", "masks"):
        add("paths", [command, "{TMP}/no-such-run"])
        add("paths", [command, "{TMP}/file"], files={"file": b"x"})
    add("paths", ["masks", "{TMP}/empty"], files={"empty/.keep": b""})
    add("paths", ["stability", "{TMP}/empty", "--quiet"], files={"empty/.keep": b""})

    # --- run-directory files read by commands
    run_find = ["find", *TINY, "--root", "{RUNROOT}"]
    add("run files", run_find, damage=("config.json", b"garbage{"))
    add("run files", run_find, damage=("config.json", b"\xff\xfe\x00\x01"))
    add("run files", run_find, damage=("population.json", b"garbage{"))
    add("run files", run_find, damage=("population.json", os.urandom(200)))
    add("run files", run_find, damage=("trial_0/level_01/iterative_reset/result.json", b"{cut sho"))
    add("run files", ["stability", "{RUN}", "--quiet"], damage=("config.json", b"garbage{"))
    add("run files", ["stability", "{RUN}", "--quiet"], damage=("config.json", b"[1, 2]"))
    add("run files", ["stability", "{RUN}", "--quiet"], damage=("config.json", b'{"config": {"train": {"lr": -1}}}'))
    add("run files", ["config", "--config", "{RUN}/config.json"], damage=("config.json", b"garbage{"))
    add("run files", ["report", "{RUN}"], damage=("results.csv", os.urandom(3000)))
    add("run files", ["report", "{RUN}"], damage=("results.csv", b"variant,trial\n\x00\x00\n"))
    add("run files", ["report", "{RUN}"], damage=("results.csv", b""))
    add("run files", ["report", "{RUN}"], damage=("results.csv", "HEADER_ONLY"))
    add("run files", ["report", "{RUN}"], damage=("results.csv", "NAN:trial"))
    add("run files", ["report", "{RUN}"], damage=("results.csv", "NAN:weights_remaining_percent"))
    add("run files", ["report", "{RUN}"], damage=("results.csv", "NUL:variant"))
    add("run files", ["report", "{RUN}"], damage=("results.csv", "NAN:early_stop_test_accuracy"), expect="warning")
    add("run files", ["report", "{RUN}"], damage=("results.csv", "NAN:final_iteration"), expect="warning")
    add("run files", ["masks", "{RUN}"], damage=("trial_0/level_01/iterative_reset/mask.safetensors", b"garbage" * 9))
    add("run files", ["masks", "{RUN}"], damage=("trial_0/level_02/oneshot_reset/mask.safetensors", b""))
    add("run files", ["stability", "{RUN}", "--quiet", "--levels", "1", "--points", "2"],
        damage=("trial_0/level_00/dense/weights_init.safetensors", b"garbage" * 9))

    # --- size: must be refused at once, never hang
    for extra in (["--steps", "99999999999999999999it"], ["--trials", "100000000"], ["--levels", "100000000"],
                  ["--trials", "9" * 30], ["--steps", "9" * 40 + "it"], ["--steps", "99999999999999999999ep"],
                  ["--steps", "1" * 5000 + "it"], ["--trials", "1" * 5000], ["--levels", "1000", "--trials", "1000"]):
        add("size", find(*extra))
    add("size", ["sweep", *TINY, "--rewinds", "0it", "--steps", "99999999999999999999it", "--root", "{TMP}/runs"])
    add("size", ["stability", "{RUN}", "--points", "100000000", "--quiet"])
    add("size", find("--model.hidden", "999999,999999"))  # 4 TB of weights: refused by the allocator at once

    # --- argparse
    for argv in (["find", "--workers", "abc"], ["find", "--population", "1.5"], ["find", "--no-such-flag"], [],
                 ["frobnicate"], ["sweep"], ["stability"], ["stability", "{RUN}", "--points", "abc"], ["find", "--levels"],
                 ["find", "--checkpoint-every", "abc"], ["report"], ["masks", "a", "b"]):
        add("argparse", argv)
    return cases


def damage_results(text: str, how: str) -> bytes:
    lines = text.splitlines()
    if how == "HEADER_ONLY":
        return (lines[0] + "\n").encode()
    action, column = how.split(":")
    header = lines[0].split(",")
    cells = lines[2].split(",")
    cells[header.index(column)] = "nan" if action == "NAN" else "\x00" + cells[header.index(column)]
    lines[2] = ",".join(cells)
    return ("\n".join(lines) + "\n").encode()


def run_case(case: Case, executable: list[str], tiny_run: Path, timeout: float) -> tuple[str, Case, str]:
    with tempfile.TemporaryDirectory(prefix="bad-input-") as tmp_text:
        tmp = Path(tmp_text)
        for name, content in case.files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(content)
        run_root = tmp / "copy"
        run_dir = run_root / tiny_run.name
        if any("{RUN" in arg for arg in case.argv):
            shutil.copytree(tiny_run, run_dir)
        if case.damage:
            name, content = case.damage
            path = run_dir / name
            if isinstance(content, str):
                content = damage_results(path.read_text(), content)
            path.write_bytes(content)
        argv = [arg.replace("{TMP}", tmp_text).replace("{RUNROOT}", str(run_root)).replace("{RUN}", str(run_dir))
                for arg in case.argv]

        def limits():
            if case.file_limit is not None:
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (case.file_limit, case.file_limit))

        env = {key: value for key, value in os.environ.items() if key != "TICKETLAB_DEBUG"}
        try:
            done = subprocess.run([*executable, *argv], capture_output=True, text=True, timeout=timeout, cwd=tmp,
                                  preexec_fn=limits, env=env, errors="replace")
        except subprocess.TimeoutExpired:
            return "hang", case, ""
    err = done.stderr.strip().splitlines()
    if "Traceback" in done.stderr:
        return "traceback", case, done.stderr[-600:]
    if case.expect == "warning":
        good = done.returncode == 0 and err and all(line.startswith("ticketlab: warning: ") for line in err)
        return ("good" if good else "other"), case, done.stderr[-400:]
    if done.returncode == 0:
        return "accepted", case, done.stderr[-300:]
    if done.returncode == 2 and len(err) == 1 and err[0].startswith("ticketlab: error: "):
        return "good", case, err[0]
    return "other", case, f"status {done.returncode}: {done.stderr[-400:]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once (default: 2)")
    parser.add_argument("--timeout", type=float, default=180, help="seconds before a case counts as a hang")
    parser.add_argument("--only", help="run only this class of inputs")
    parser.add_argument("--show", action="store_true", help="print every case's stderr line")
    args = parser.parse_args()
    installed = Path(sys.executable).parent / "ticketlab"
    executable = [str(installed)] if installed.exists() else [sys.executable, "-m", "ticketlab.cli"]
    cases = [case for case in corpus() if args.only is None or case.kind == args.only]
    with tempfile.TemporaryDirectory(prefix="bad-inputs-run-") as root:
        start = time.time()
        subprocess.run([*executable, "find", *TINY, "--root", root], check=True, capture_output=True)
        tiny_run = next(path for path in Path(root).iterdir() if path.is_dir())
        print(f"tiny run built in {time.time() - start:.0f} s; {len(cases)} cases", file=sys.stderr)
        with ThreadPoolExecutor(args.jobs) as pool:
            outcomes = list(pool.map(lambda case: run_case(case, executable, tiny_run, args.timeout), cases))
    counts: dict[str, Counter] = {}
    for outcome, case, detail in outcomes:
        counts.setdefault(case.kind, Counter())[outcome] += 1
        if outcome != "good" or args.show:
            print(f"[{outcome}] {case.kind}: ticketlab {' '.join(case.argv)} {case.damage[0] if case.damage else ''}"
                  f"\n    {detail.strip()[-600:]}")
    columns = ("good", "traceback", "accepted", "hang", "other")
    print(f"\n{'class':14s}" + "".join(f"{name:>10s}" for name in columns))
    for kind, counter in counts.items():
        print(f"{kind:14s}" + "".join(f"{counter[name]:>10d}" for name in columns))
    total = sum(counts.values(), Counter())
    print(f"{'total':14s}" + "".join(f"{total[name]:>10d}" for name in columns) + f"   ({len(outcomes)} cases, "
          f"{time.time() - start:.0f} s)")
    return 0 if total["good"] == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
