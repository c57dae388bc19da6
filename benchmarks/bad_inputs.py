"""Run a corpus of bad inputs (about 230 on find/sweep/config/report/stability/masks, and about 330 on every
later command and task) through the `ticketlab` executable and count how each ends.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bad_inputs.py [--jobs 2] [--timeout 120]
        [--only KIND[,KIND...]] [--show] [--list] [--failures FILE]

The executable is `python -m ticketlab` with this checkout first on PYTHONPATH, so the code under test is the
checkout's. Each case runs in a fresh directory, in its own process group, with a timeout. Outcomes:
good (status 2 and exactly one `ticketlab: error:` line on stderr; `verify` on damage: status 1 and no
traceback; a case meant to succeed with a warning: status 0, a warning line and no error), traceback, accepted (status 0
where an error was due), hang (timed out, counted and killed, not waited on), lost (a file of the run copy the case
worked on changed or vanished, or a failed write left a partial file), other (anything else, e.g. two lines).

Cases on a run work on a copy of a prepared run, built once per benchmark run with the smallest settings: a
classification run (MLP 16-16, 40 iterations, 2 levels), a transfer of it to classes 0-4, a character LSTM on
a generated text, a Transformer on a generated parallel corpus, a PPO CartPole agent and a ResNet-18 on a
generated image folder. Only the runs the selected cases use are built. Every file of a copy is hashed before
and after the case: a pre-existing file that changed or vanished makes the case "lost" unless the case is one
where the README promises a repair (a damaged job set aside and recomputed). A file the case damaged may be
rewritten (repaired) without counting as lost.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import re
import resource
import shlex
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
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
TINY = ["--model.hidden", "16,16", "--steps", "40it", "--levels", "2", "--trials", "1", "--data.train_size", "500",
        "--train.eval_every", "20it", "--variants", "iterative_reset,oneshot_reset", "--quiet", "--no-report",
        "--workers", "1"]
# the other tasks' prepared runs and the base of their cases: one level, one variant, a few iterations
LANG = ["--preset", "lstm_tiny", "--data-dir", "{SHK}", "--levels", "1", "--variants", "iterative_reset", "--quiet",
        "--no-report", "--workers", "1"]
TRANS = ["--preset", "transformer_tiny", "--data.name", "parallel", "--data-dir", "{PAR}", "--data.cache_dir",
         "{TMP}/cache", "--levels", "1", "--variants", "iterative_reset", "--data.train_size", "80",
         "--data.vocab_size", "40", "--data.eval_size", "8", "--steps", "4it", "--train.eval_every", "2it",
         "--prune.rewind", "1it", "--train.warmup", "1it", "--quiet", "--no-report", "--workers", "1"]
RL = ["--preset", "ppo_tiny", "--levels", "1", "--variants", "iterative_reset", "--quiet", "--no-report",
      "--workers", "1"]
IMG = ["--preset", "resnet18_image_folder_tiny", "--data-dir", "{IMG}", "--steps", "2it", "--train.milestones",
       "1it", "--train.warmup", "0it", "--prune.rewind", "0it", "--train.eval_every", "1it", "--levels", "1",
       "--variants", "iterative_reset", "--data.validation_size", "3", "--data.loader_workers", "1",
       "--train.batch_size", "4", "--quiet", "--no-report"]

Content = bytes | str | Callable[[Path], None] | None  # None deletes; str: a results.csv damage (damage_results)


# files every run of `find` appends to by design (one entry per session): a resumed run changes them
SESSION_LOGS = {"provenance.json"}


@dataclass
class Case:
    kind: str  # the command or task the input is aimed at (old classes: values, inconsistent, paths, ...)
    argv: list[str]  # after the executable; {TMP} is the case's directory, other {NAME}s copies of prepared runs
    expect: str = "error"  # error | warning (status 0, warning lines only) | damage (verify: status 1) |
    # ok (status 0, warning lines at most) | clean (ok, or an error in one line: either answer is right)
    damage: tuple[str, Content] | list[tuple[str, Content]] | None = None  # (path, new content); a path without a
    # {NAME} is inside {RUN}
    file_limit: int | None = None  # RLIMIT_FSIZE in bytes: writes beyond it fail (a full disk)
    files: dict[str, bytes] = field(default_factory=dict)  # files to create in {TMP}
    repair: bool = False  # the README promises a repair: damaged files may be set aside (no "lost" check)
    absent: tuple[str, ...] = ()  # paths that must not exist after the case (no partial output)
    launcher: str = "python"  # python (python -m ticketlab) | torchrun (torchrun --standalone --nproc-per-node 2)
    new: bool = False  # added with the later commands and tasks (the counts are kept apart)


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
    for extra in (["--rewind", "0it,0it"], ["--rewind", "0it,500it"], ["--rewind", ","],
                  ["--rewind", "0it", "--variants", "oneshot_reset"], ["--rewind", "0it,9ep"]):
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
    add("paths", ["sweep", *TINY, "--rewind", "0it", "--root", "{TMP}/runs"], file_limit=1000)
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
    add("run files", run_find, damage=("trial_0/level_01/iterative_reset/result.json", b"{cut sho"),
        expect="warning", repair=True)  # the README: set aside (one warning) and recomputed with its children
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
    add("run files", ["stability", "{RUN}", "--quiet", "--level", "1", "--points", "2"],
        damage=("trial_0/level_00/dense/weights_init.safetensors", b"garbage" * 9))

    # --- size: must be refused at once, never hang
    for extra in (["--steps", "99999999999999999999it"], ["--trials", "100000000"], ["--levels", "100000000"],
                  ["--trials", "9" * 30], ["--steps", "9" * 40 + "it"], ["--steps", "99999999999999999999ep"],
                  ["--steps", "1" * 5000 + "it"], ["--trials", "1" * 5000], ["--levels", "1000", "--trials", "1000"]):
        add("size", find(*extra))
    add("size", ["sweep", *TINY, "--rewind", "0it", "--steps", "99999999999999999999it", "--root", "{TMP}/runs"])
    add("size", ["stability", "{RUN}", "--points", "100000000", "--quiet"])
    add("size", find("--model.hidden", "999999,999999"))  # 4 TB of weights: refused by the allocator at once

    # --- argparse
    for argv in (["find", "--workers", "abc"], ["find", "--population", "1.5"], ["find", "--no-such-flag"], [],
                 ["frobnicate"], ["sweep"], ["stability"], ["stability", "{RUN}", "--points", "abc"], ["find", "--levels"],
                 ["find", "--checkpoint-every", "abc"], ["report"], ["masks", "a", "b"]):
        add("argparse", argv)
    return cases


# --- damage helpers (each returns a function of the file's path, with a description for the listing)

def named(description: str, damage: Callable[[Path], None]) -> Callable[[Path], None]:
    damage.description = description
    return damage


def flip(offset: int = -5) -> Callable[[Path], None]:
    """Flip the bits of one byte (default: near the end, i.e. inside a safetensors file's tensor data)."""
    def damage(path: Path) -> None:
        data = bytearray(path.read_bytes())
        data[offset] ^= 0xFF
        path.write_bytes(bytes(data))
    return named(f"byte {offset} flipped", damage)


def append(extra: bytes) -> Callable[[Path], None]:
    return named(f"{extra!r} appended", lambda path: path.write_bytes(path.read_bytes() + extra))


def truncate(keep: float) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        data = path.read_bytes()
        path.write_bytes(data[:int(len(data) * keep)])
    return named(f"cut to {keep:.0%}", damage)


def edit_json(change: Callable[[dict], None]) -> Callable[[Path], None]:
    """Parse, change in place, write back with the original's layout (indent 2, sorted keys)."""
    def damage(path: Path) -> None:
        record = json.loads(path.read_text())
        change(record)
        path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return named(f"edited: {getattr(change, 'description', 'changed')}", damage)


def set_in(*keys_and_value):
    """edit_json change: record[k1][k2]... = value."""
    *keys, value = keys_and_value

    def change(record):
        for key in keys[:-1]:
            record = record[key]
        record[keys[-1]] = value
    change.description = f"{'.'.join(keys)} = {value!r}"
    return change


def edit_csv(change: Callable[[list[list[str]]], None], description: str) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        rows = list(csv.reader(io.StringIO(path.read_text())))
        change(rows)
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        path.write_text(buffer.getvalue())
    return named(description, damage)


def drop_column(name: str) -> Callable[[Path], None]:
    def change(rows):
        index = rows[0].index(name)
        for row in rows:
            del row[index]
    return edit_csv(change, f"column {name} dropped")


def set_cell(name: str, value: str, row: int = 1) -> Callable[[Path], None]:
    def change(rows):
        rows[row][rows[0].index(name)] = value
    return edit_csv(change, f"row {row} {name} = {value!r}")


def cut_row(row: int = 1, keep: int = 3) -> Callable[[Path], None]:
    def change(rows):
        rows[row] = rows[row][:keep]
    return edit_csv(change, f"row {row} cut to {keep} cells")


def only_rows(keep: Callable[[dict], bool], description: str) -> Callable[[Path], None]:
    def change(rows):
        rows[1:] = [row for row in rows[1:] if keep(dict(zip(rows[0], row)))]
    return edit_csv(change, description)


def write_text(text: str) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return named(f"written: {text[:24]!r}", damage)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path)


def rename_to(new_name: str) -> Callable[[Path], None]:
    return named(f"renamed to {new_name}", lambda path: path.rename(path.parent / new_name))


def into_directory(path: Path) -> None:
    """The file becomes a directory of the same name (holding one empty file)."""
    path.unlink(missing_ok=True)
    path.mkdir(parents=True)
    (path / "x").write_bytes(b"")


def new_image(path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 40), (10, 200, 30)).save(path)


J1 = "trial_0/level_01/iterative_reset"  # a finished pruned job of every prepared run
J0 = "trial_0/level_00/dense"
CONTROLS = "controls"  # good inputs: each prepared run through each command (checks the harness, not counted new)


def later_corpus() -> list[Case]:
    """Bad inputs for the commands and tasks added after the first hardening pass, designed from the README's
    promises (value ranges, damaged and changed files, paths, conflicting flags)."""
    cases: list[Case] = []

    def add(kind, argv, **options):
        cases.append(Case(kind, argv, new=kind != CONTROLS, **options))

    export = ["export", "{RUN}", "--level", "1", "--format"]
    out = ["--output", "{TMP}/ticket.safetensors"]

    # --- controls: the same commands on good inputs end with status 0
    for fmt in ("prune", "dense", "compact", "sparse"):
        add(CONTROLS, [*export, fmt, *out], expect="ok")
    add(CONTROLS, [*export, "onnx-dense", "--output", "{TMP}/ticket.onnx"], expect="ok")
    for run in ("{RUN}", "{LANG}", "{TRANS}", "{RL}", "{XJOBS}", "{IMGRUN}"):
        add(CONTROLS, ["verify", run], expect="ok")
    add(CONTROLS, ["cost", "{RUN}"], expect="ok")
    add(CONTROLS, ["transfer-matrix", "{XFER}", "--at", "50", "--out", "{TMP}/m"], expect="ok")
    add(CONTROLS, ["find", *LANG, "--root", "{LANGROOT}"], expect="ok")

    # --- transfer: sources, levels, the target's classes and shapes, flags
    transfer = ["transfer", "{RUN}", "--quiet", "--no-report", "--workers", "1", "--root", "{TMP}/t"]
    for extra in (["--level", "9"], ["--level", "x"], ["--level", "-1"], ["--level", ""], ["--level", "1,1"],
                  ["--level", "1.5"], ["--output-layer", "sparse"], ["--data.classes", "0-99"],
                  ["--data.classes", "5-3"], ["--data.classes", "a"], ["--data.classes", "0,0"],
                  ["--data.classes", ""], ["--data.classes", "3"], ["--data.image_size", "0"],
                  ["--data.image_size", "-8"], ["--data.channels", "2"], ["--model.hidden", "32,32"],
                  ["--model.name", "lenet300_100"], ["--train.lr", "nan"], ["--trials", "0"],
                  ["--preset", "mnist1d", "--config", "{TMP}/c.json"], ["--task", "language"],
                  ["--root", "{TMP}/file"], ["--output-layer", "masked", "--level", "7"]):
        classes = [] if "--data.classes" in extra else ["--data.classes", "0-4"]  # never a transfer to itself
        add("transfer", [*transfer, *classes, *extra], files={"c.json": b"{}", "file": b"x"})
    add("transfer", ["transfer", "{TMP}/no-such-run", "--data.classes", "0-4", "--quiet"])
    add("transfer", ["transfer", "{TMP}/file", "--data.classes", "0-4", "--quiet"], files={"file": b"x"})
    add("transfer", ["transfer", "{TMP}/empty", "--data.classes", "0-4", "--quiet"], files={"empty/.keep": b""})
    add("transfer", ["transfer", "{LANG}", "--data.classes", "0-4", "--quiet", "--root", "{TMP}/t"])
    add("transfer", ["transfer", "{RUN}", "{LANG}", "--data.classes", "0-4", "--quiet", "--root", "{TMP}/t"])
    add("transfer", [*transfer, "--data.classes", "0-4"], damage=(f"{J1}/mask.safetensors", b"garbage" * 9))
    add("transfer", [*transfer, "--data.classes", "0-4"], damage=(f"{J1}/weights_init.safetensors", flip()))
    add("transfer", [*transfer, "--data.classes", "0-4"], damage=("config.json", b'{"config": \xff\xfe}'))
    add("transfer", [*transfer, "--data.classes", "0-4"],
        damage=("config.json", edit_json(set_in("config", "train", "lr", 0.5))))
    add("transfer", [*transfer, "--data.classes", "0-4"], damage=(f"{J1}/result.json", b"{cut"))
    add("transfer", [*transfer, "--data.classes", "0-4"], damage=(f"{J0}/result.json", None), expect="clean")
    # resuming a finished transfer whose own files are damaged: refused in one line, or set aside and redone
    xfer_again = ["transfer", "{XSRC}", "--data.classes", "0-4", "--quiet", "--no-report", "--workers", "1"]
    add("transfer", xfer_again, damage=("{XFER}/transfer.json", b"garbage{"), expect="clean")
    add("transfer", xfer_again, damage=("{XFER}/transfer.json", edit_json(set_in("output_layer", "masked"))),
        expect="clean")
    add("transfer", xfer_again, damage=("{XJOBS}/source.json", b"\xff\xfe"), expect="clean")
    add("transfer", xfer_again, damage=("{XJOBS}/trial_0/level_01/transferred/result.json", b"{cut"),
        expect="warning", repair=True)
    add("transfer", xfer_again, damage=("{XJOBS}/trial_0/level_01/transferred/weights_final.safetensors", flip()),
        expect="warning", repair=True)

    # --- transfer-matrix: transfer.csv damage, --at, --out
    matrix = ["transfer-matrix", "{XFER}", "--at", "50", "--out", "{TMP}/m"]
    for at in ("nan", "0", "150", "-5", "abc", "inf", ""):
        add("transfer-matrix", ["transfer-matrix", "{XFER}", "--at", at, "--out", "{TMP}/m"])
    add("transfer-matrix", ["transfer-matrix", "{XFER}", "--out", "{TMP}/m"])
    add("transfer-matrix", ["transfer-matrix", "{XFER}", "--at", "50"])
    add("transfer-matrix", ["transfer-matrix", "--at", "50", "--out", "{TMP}/m"])
    add("transfer-matrix", ["transfer-matrix", "{TMP}/no-such", "--at", "50", "--out", "{TMP}/m"])
    add("transfer-matrix", ["transfer-matrix", "{TMP}/empty", "--at", "50", "--out", "{TMP}/m"],
        files={"empty/.keep": b""})
    add("transfer-matrix", ["transfer-matrix", "{RUN}", "--at", "50", "--out", "{TMP}/m"])
    add("transfer-matrix", ["transfer-matrix", "{RUN}/results.csv", "--at", "50", "--out", "{TMP}/m"])
    add("transfer-matrix", ["transfer-matrix", "{TMP}/x.csv", "--at", "50", "--out", "{TMP}/m"],
        files={"x.csv": os.urandom(500)})
    add("transfer-matrix", [*matrix[:-1], "{TMP}/file"], files={"file": b"x"})
    add("transfer-matrix", [*matrix[:-1], "/proc/ticketlab-matrix"])
    add("transfer-matrix", [*matrix[:-1], ""])
    for damage in (b"", None, b"\xff\xfe\x00garbage\n", os.urandom(400), drop_column("early_stop_test_accuracy"),
                   drop_column("weights_remaining_percent"), drop_column("source"), drop_column("variant"),
                   set_cell("weights_remaining_percent", "many"), set_cell("early_stop_test_accuracy", "high"),
                   set_cell("weights_remaining_percent", "nan"), set_cell("level", "x"), cut_row(1, 3),
                   only_rows(lambda row: False, "header only"),
                   append(b"a,b\n"), truncate(0.5)):
        add("transfer-matrix", matrix, damage=("{XFER}/transfer.csv", damage))
    add("transfer-matrix", matrix, damage=("{XFER}/transfer.csv", set_cell("early_stop_test_accuracy", "nan")),
        expect="clean")
    add("transfer-matrix", matrix, expect="clean",
        damage=("{XFER}/transfer.csv", only_rows(lambda row: row["variant"] != "transferred", "no transferred rows")))

    # --- export: levels, trials, variants, formats, block sizes, output paths, damaged files
    for argv in (["--level", "9", "--format", "dense"], ["--level", "-1", "--format", "dense"],
                 ["--level", "x", "--format", "dense"], ["--level", "1", "--trial", "5", "--format", "dense"],
                 ["--level", "1", "--trial", "-1", "--format", "dense"],
                 ["--level", "1", "--variant", "lucky", "--format", "dense"],
                 ["--level", "1", "--variant", "oneshot_reinit", "--format", "dense"],
                 ["--level", "1", "--variant", "dense", "--format", "dense"], ["--level", "1", "--format", "xyz"],
                 ["--level", "1"], ["--format", "dense"], ["--level", "", "--format", "dense"]):
        add("export", ["export", "{RUN}", *argv, *out])
    add("export", [*export, "dense"])  # no --output
    for blocksize in ("0", "-1", "3", "x", "1000000", "nan"):
        add("export", [*export, "sparse", "--sparse-layout", "bsr", "--blocksize", blocksize, *out])
    add("export", [*export, "sparse", "--sparse-layout", "coo", *out])
    add("export", [*export, "prune", "--blocksize", "3", *out], expect="clean")  # a bsr block size without bsr
    add("export", [*export, "sparse", "--sparse-layout", "bsr", "--blocksize", "2", *out], expect="clean")
    for target in ("{TMP}/dir", "/proc/ticket.safetensors", "", "{TMP}/file/x.safetensors", "/sys/x.onnx"):
        add("export", [*export, "dense", "--output", target], files={"dir/.keep": b"", "file": b"x"})
    for own in (f"{J1}/weights_final.safetensors", f"{J1}/mask.safetensors", f"{J0}/weights_init.safetensors",
                f"{J1}/result.json", "results.csv", "config.json", "population.json", "layer_sparsity.csv"):
        add("export", [*export, "dense", "--output", f"{{RUN}}/{own}"])
    add("export", [*export, "dense", *out], file_limit=2000, absent=("{TMP}/ticket.safetensors",))
    add("export", [*export, "onnx-dense", "--output", "{TMP}/t.onnx"], file_limit=2000, absent=("{TMP}/t.onnx",))
    for name, damage in ((f"{J1}/weights_final.safetensors", b"garbage" * 9),
                         (f"{J1}/weights_final.safetensors", flip()), (f"{J1}/mask.safetensors", flip()),
                         (f"{J1}/mask.safetensors", None), (f"{J1}/result.json", b"\xff\xfe"),
                         (f"{J1}/result.json", edit_json(set_in("early_stop_iteration", 7))),
                         ("config.json", b'{"config": \xff\xfe}'),
                         ("config.json", edit_json(set_in("config", "model", "hidden", [32, 32]))),
                         ("config.json", edit_json(set_in("config", "task", "language")))):
        add("export", [*export, "dense", *out], damage=(name, damage))
    add("export", ["export", "{LANG}", "--level", "1", "--format", "compact", *out], expect="clean")
    add("export", ["export", "{TRANS}", "--level", "1", "--format", "sparse", *out], expect="clean")
    add("export", ["export", "{RL}", "--level", "1", "--format", "onnx-dense", "--output", "{TMP}/t.onnx"],
        expect="clean")
    add("export", ["export", "{TRANS}", "--level", "1", "--format", "dense", *out],
        damage=("{TRANS}/tokenizer.json", b'{"model": '), expect="clean")

    # --- cost: paths, damaged files (nothing damaged is counted), other tasks
    for argv, files in ((["cost", "{TMP}/no-such-run"], {}), (["cost", "{TMP}/file"], {"file": b"x"}),
                        (["cost", "{TMP}/empty"], {"empty/.keep": b""}), (["cost"], {}),
                        (["cost", "{RUN}", "{RUN}"], {}), (["cost", "{RUN}/results.csv"], {})):
        add("cost", argv, files=files)
    for name, damage in ((f"{J1}/mask.safetensors", b"garbage" * 9), (f"{J1}/mask.safetensors", flip()),
                         (f"{J1}/mask.safetensors", truncate(0.5)), (f"{J0}/mask.safetensors", flip(-1)),
                         ("config.json", b"\xff\xfe\x00\x01"), ("config.json", b"garbage{"),
                         ("config.json", edit_json(set_in("config", "model", "hidden", [8, 8]))),
                         (f"{J1}/result.json", b"\xff\xfe"),
                         (f"{J1}/result.json", edit_json(set_in("weights_remaining_percent", 1.0)))):
        add("cost", ["cost", "{RUN}"], damage=(name, damage))
    # cost reads no population.json (how a run was stacked): its numbers stand; `verify` names that damage
    add("cost", ["cost", "{RUN}"], damage=("population.json", b"garbage{"), expect="clean")
    add("cost", ["cost", "{RUN}"], damage=("cost.csv", write_text("")), expect="clean", repair=True)  # its own output
    add("cost", ["cost", "{RUN}"], damage=("cost.csv", into_directory))
    add("cost", ["cost", "{RUN}"], file_limit=1500)
    for run in ("{LANG}", "{TRANS}", "{RL}", "{IMGRUN}"):
        add("cost", ["cost", run], expect="clean")
    add("cost", ["cost", "{XFER}"], expect="clean")

    # --- verify: damage is status 1, a non-run status 2
    for argv, files in ((["verify", "{TMP}/no-such-run"], {}), (["verify", "{TMP}/file"], {"file": b"x"}),
                        (["verify", "{TMP}/empty"], {"empty/.keep": b""}), (["verify"], {}),
                        (["verify", "{RUN}/results.csv"], {})):
        add("verify", argv, files=files)
    for name, damage in (("config.json", b"garbage{"), ("config.json", b"\xff\xfe\x00\x01"),
                         ("config.json", edit_json(set_in("config", "train", "lr", 0.5))),
                         ("population.json", os.urandom(100)),
                         (f"{J1}/result.json", b"{cut"), (f"{J1}/result.json", b"\xff\xfe"),
                         (f"{J1}/result.json", edit_json(set_in("final_iteration", 41))),
                         (f"{J1}/mask.safetensors", flip()), (f"{J1}/weights_final.safetensors", b""),
                         (f"{J0}/weights_init.safetensors", None), (f"{J0}/metrics.jsonl", append(b'{"step": 1}\n')),
                         ("trial_0/level_02/oneshot_reset/weights_final.safetensors", truncate(0.9)),
                         ):
        add("verify", ["verify", "{RUN}"], damage=(name, damage), expect="damage")
    for name in ("mask.safetensors", "checkpoint.safetensors", "weights_init.safetensors"):  # an unfinished job's
        add("verify", ["verify", "{RUN}"], damage=[(f"{J1}/result.json", None), (f"{J1}/{name}", b"garbage" * 9)],
            expect="damage")
    add("verify", ["verify", "{LANG}"], damage=(f"{{LANG}}/{J1}/weights_final.safetensors", flip()), expect="damage")
    add("verify", ["verify", "{TRANS}"], damage=(f"{{TRANS}}/{J1}/result.json", b"{cut"), expect="damage")
    add("verify", ["verify", "{RL}"], damage=(f"{{RL}}/{J0}/mask.safetensors", flip()), expect="damage")
    add("verify", ["verify", "{XJOBS}"], damage=("{XJOBS}/trial_0/level_01/transferred/mask.safetensors", flip()),
        expect="damage")
    add("verify", ["verify", "{XFER}"], expect="clean")  # a transfer directory: checked, or refused in one line

    # --- language: values, corpora, data directories
    lang = ["find", *LANG, "--root", "{TMP}/runs"]
    for extra in (["--data.sequence_length", "0"], ["--data.sequence_length", "100000"],
                  ["--train.batch_size", "100000"], ["--data.train_size", "99999999"],
                  ["--model.tie_weights", "maybe"],
                  ["--model.embedding_dim", "0"], ["--model.embedding_dim", "-3"], ["--model.hidden", "0"],
                  ["--model.dropout", "1"], ["--data.classes", "0-4"], ["--data.image_size", "32"],
                  ["--model.name", "mlp"], ["--model.name", "transformer"], ["--data.name", "mnist1d"],
                  ["--data.name", "wikitext103"], ["--variants", "synflow"], ["--train.clip_grad_norm", "0"],
                  ["--model.init", "uniform_x"], ["--train.beam_size", "4"],
                  ["--data.vocab_size", "10"], ["--prune.layer_rates", "decoder.weight=0.5,decoder.weight=0.1"]):
        add("language", [*lang, *extra])
    add("language", [*lang, "--prune.unit", "channel"], expect="clean")
    for name, content in (("input.txt", b""), ("input.txt", b"ab"), ("input.txt", b"\xff\xfe\x80" * 3000),
                          ("input.txt", into_directory)):
        add("language", lang, damage=(f"{{SHK}}/{name}", content))
    add("language", [*lang[:lang.index("--data-dir") + 1], "{SHK}/input.txt", *lang[lang.index("--data-dir") + 2:]],
        expect="ok")  # the README: --data-dir may be the text file itself
    add("language", [*lang, "--data-dir", "{TMP}/empty"], files={"empty/.keep": b""})
    add("language", [*lang, "--data-dir", "{TMP}/no-such-dir"])
    for preset, files in (("lstm_ptb_small", {"ptb/ptb.train.txt": b"a b c\n" * 50, "ptb/ptb.valid.txt": b"a b\n"}),
                          ("lstm_ptb_small", {"ptb/ptb.train.txt": b"", "ptb/ptb.valid.txt": b"a\n",
                                              "ptb/ptb.test.txt": b"a\n"}),
                          ("lstm_ptb_small", {"ptb/ptb.train.txt": b"\xff\xfe" * 40, "ptb/ptb.valid.txt": b"a\n",
                                              "ptb/ptb.test.txt": b"a\n"}),
                          ("lstm_wikitext2_small", {"ptb/wikitext-2-v1.zip": b"PK\x03\x04garbage"})):
        add("language", ["find", "--preset", preset, "--data-dir", "{TMP}/ptb", "--steps", "2it", "--levels", "1",
                         "--quiet", "--root", "{TMP}/runs", "--data.download", "false"], files=files)
    # resuming with changed inputs: an unfinished run (its pruned job's result removed) and another corpus
    unfinished = (f"{{LANG}}/{J1}/result.json", None)
    add("language", ["find", *LANG, "--root", "{LANGROOT}"],
        damage=[unfinished, ("{SHK}/input.txt", write_text("xyz QWERTY 0123 !?;\n" * 300))])
    add("language", ["find", *LANG, "--root", "{LANGROOT}"],
        damage=[unfinished, ("{LANG}/config.json", edit_json(set_in("config", "task", "translation")))])
    add("language", ["find", *LANG, "--root", "{LANGROOT}", "--data.sequence_length", "9"], expect="ok")
    add("language", ["find", *LANG, "--root", "{LANGROOT}"], damage=(f"{{LANG}}/{J1}/result.json", b"{cut"),
        expect="warning", repair=True)
    add("language", ["report", "{LANG}"], damage=("{LANG}/results.csv", set_cell("early_stop_test_metric", "x")))
    add("language", ["masks", "{LANG}"], damage=(f"{{LANG}}/{J1}/mask.safetensors", flip()))
    add("language", ["stability", "{LANG}", "--quiet", "--level", "9"])

    # --- translation: values, corpora, the tokenizer
    trans = ["find", *TRANS, "--root", "{TMP}/runs"]
    for extra in (["--data.vocab_size", "0"], ["--data.vocab_size", "-1"], ["--data.vocab_size", "x"],
                  ["--data.source", "fr"], ["--data.source", "en", "--data.target", "en"], ["--data.target", ""],
                  ["--train.beam_size", "0"], ["--train.beam_size", "-2"], ["--train.label_smoothing", "1.5"],
                  ["--train.label_smoothing", "-0.1"], ["--train.label_smoothing", "nan"], ["--train.beta2", "1"],
                  ["--train.eps", "0"], ["--train.eps", "-1e-8"], ["--model.heads", "3"], ["--model.heads", "0"],
                  ["--model.ffn_dim", "0"], ["--model.depth", "0"], ["--model.width", "0"],
                  ["--data.eval_size", "0"], ["--data.eval_size", "100000"], ["--data.train_size", "100000"],
                  ["--train.batch_size", "3"], ["--model.name", "lstm"],
                  ["--data.name", "multi30k", "--data.download", "false"], ["--model.tie_weights", "sometimes"]):
        add("translation", [*trans, *extra])
    add("translation", [*trans, "--train.schedule", "inverse_sqrt", "--train.warmup", "0it"], expect="clean")
    add("translation", trans, damage=("{PAR}/train.de", append("ein hund\n".encode())))
    add("translation", trans, damage=("{PAR}/train.de", b"\xff\xfe\xfd\n" * 100))
    add("translation", trans, damage=("{PAR}/train.en", b""))
    add("translation", trans, damage=("{PAR}/test.en", None))
    add("translation", trans, damage=("{PAR}/valid.de", rename_to("valid.fr")))
    add("translation", trans, damage=("{PAR}/train.de", write_text("\n" * 100)))
    add("translation", [*trans, "--data-dir", "{PAR}/train.de"])
    tokenizer = "{TRANS}/tokenizer.json"
    add("translation", ["find", *TRANS, "--root", "{TRANSROOT}"],
        damage=[(f"{{TRANS}}/{J1}/result.json", None),
                (tokenizer, edit_json(lambda record: record["model"]["vocab"].update(
                    {key: value for key, value in zip(("zz", "yy"), (998, 999))})))])
    add("translation", ["find", *TRANS, "--root", "{TRANSROOT}"],
        damage=[(f"{{TRANS}}/{J1}/result.json", None),
                ("{PAR}/train.de", write_text("völlig andere wörter hier\n" * 100))])
    add("translation", ["find", *TRANS, "--root", "{TRANSROOT}"], damage=(tokenizer, b"\xff\xfe"))
    add("translation", ["find", *TRANS, "--root", "{TRANSROOT}"], damage=(tokenizer, None), expect="clean")

    # --- reinforcement learning: environments, models, PPO settings
    rl = ["find", *RL, "--root", "{TMP}/runs"]
    for extra in (["--data.name", "CartPole-v99"], ["--data.name", "FrozenLake-v1"], ["--data.name", ""],
                  ["--model.name", "nature_cnn"], ["--model.name", "lenet300_100"], ["--model.name", "lstm"],
                  ["--rl.num_envs", "0"], ["--rl.num_envs", "-1"], ["--rl.rollout_steps", "0"],
                  ["--rl.gamma", "1.5"], ["--rl.gamma", "nan"], ["--rl.gae_lambda", "-0.1"],
                  ["--rl.minibatches", "0"], ["--rl.minibatches", "1000"], ["--rl.update_epochs", "0"],
                  ["--rl.clip_coef", "-1"], ["--rl.entropy_coef", "-1"], ["--rl.value_coef", "nan"],
                  ["--rl.eval_episodes", "0"], ["--rl.deterministic_eval", "2"], ["--rl.shared_trunk", "perhaps"],
                  ["--rl.num_envs", "100000000"], ["--data.classes", "0-1"], ["--variants", "grasp"]):
        add("rl", [*rl, *extra])
    add("rl", ["find", *RL, "--root", "{RLROOT}"], damage=(f"{{RL}}/{J1}/weights_final.safetensors", flip()),
        expect="warning", repair=True)
    add("rl", ["find", *RL, "--root", "{RLROOT}", "--population", "1"])  # stored 32
    add("rl", ["find", *RL, "--root", "{RLROOT}"], damage=("{RL}/population.json",
                                                          edit_json(set_in("device", "cuda"))))
    add("rl", ["stability", "{RL}", "--quiet", "--points", "0"])

    # --- image folders: layouts, images, a changed folder on resume
    img = ["find", *IMG, "--root", "{TMP}/runs"]
    for damage in (("{IMG}/train/dog", remove_tree), ("{IMG}/val/dog", rename_to("wolf")),
                   ("{IMG}/train/emu/000.jpg", b"not a jpeg"), ("{IMG}/train/cat/000.jpg", b""),
                   ("{IMG}/val", remove_tree), ("{IMG}/train/emu/000.jpg", truncate(0.3))):
        add("image folder", img, damage=damage)
    add("image folder", img, damage=[("{IMG}/train/dog", remove_tree), ("{IMG}/train/emu", remove_tree),
                                     ("{IMG}/val/dog", remove_tree), ("{IMG}/val/emu", remove_tree)])
    for extra in (["--data.validation_size", "1000"], ["--data.image_size", "0"],
                  ["--data.loader_workers", "-1"], ["--data.loader_workers", "x"], ["--model.width", "0"],
                  ["--data-dir", "{TMP}/file"], ["--data.classes", "0-7"], ["--model.name", "resnet19"]):
        add("image folder", [*img, *extra], files={"file": b"x"})
    add("image folder", ["find", *IMG, "--root", "{IMGROOT}"], damage=("{IMG}/train/cat/999.jpg", new_image))
    add("image folder", ["find", *IMG, "--root", "{IMGROOT}"], damage=("{IMG}/val/emu/000.jpg", None))
    add("image folder", ["find", *IMG, "--root", "{IMGROOT}"], damage=("{IMGRUN}/image_folder.json", b"\xff{"))

    # --- executors: Ray flags
    for extra in (["--executor", "dask"], ["--ray-address", "auto"], ["--ray-cpus-per-task", "2"],
                  ["--executor", "ray", "--ray-cpus-per-task", "0"], ["--executor", "ray", "--ray-cpus-per-task", "x"],
                  ["--executor", "ray", "--ray-cpus-per-task", "-1"],
                  ["--executor", "ray", "--ray-cpus-per-task", "100000"],
                  ["--executor", "ray", "--ray-address", "127.0.0.1:1"], ["--executor", "ray", "--ray-address", ""],
                  ["--executor", "ray", "--ray-address", "no-such-host.invalid:6379"]):
        add("executors", find(*extra))
    add("executors", ["sweep", *TINY, "--rewind", "0it", "--executor", "ray", "--ray-cpus-per-task", "0",
                      "--root", "{TMP}/runs"])
    # transfer takes --executor since the CLI's one vocabulary (issue 25): a bad Ray setting is the bad input now
    add("executors", ["transfer", "{RUN}", "--data.classes", "0-4", "--executor", "ray", "--ray-cpus-per-task", "0",
                      "--quiet"])

    # --- torchrun: tasks that refuse it, a batch that does not split, a resume with another process count
    tiny_run = ["find", *TINY]
    add("torchrun", ["find", *LANG, "--root", "{TMP}/runs"], launcher="torchrun")
    add("torchrun", ["find", *RL, "--root", "{TMP}/runs"], launcher="torchrun")
    add("torchrun", [*tiny_run, "--train.batch_size", "101", "--root", "{TMP}/runs"], launcher="torchrun")
    add("torchrun", [*tiny_run, "--executor", "ray", "--root", "{TMP}/runs"], launcher="torchrun")
    add("torchrun", [*tiny_run, "--root", "{RUNROOT}"], launcher="torchrun",
        damage=(f"{J1}/result.json", None))  # the run was trained by one process

    # --- cheaper tickets and channel pruning: every value checked before training
    for extra in (["--variants", "synflow_lucky"], ["--variants", "snip_reinit_shuffled"],
                  ["--prune.score_batches", "0"], ["--prune.score_batches", "-1"], ["--prune.synflow_rounds", "0"],
                  ["--prune.at_init_scope", "local"], ["--prune.early_bird_every", "0it"],
                  ["--prune.early_bird_window", "0"], ["--prune.early_bird_threshold", "1.5"],
                  ["--prune.early_bird_threshold", "nan"], ["--prune.early_bird_criterion", "gradient"],
                  ["--prune.early_bird_criterion", "channels", "--variants", "early_bird"],
                  ["--prune.unit", "filter"], ["--prune.channel_score", "l2"],
                  ["--prune.unit", "channel", "--prune.channel_score", "bn_scale"],
                  ["--prune.rewind_optimizer_state", "maybe"], ["--variants", "snip,snip"]):
        add("cheap tickets", find(*extra))
    add("cheap tickets", find("--prune.early_bird_every", "999ep", "--variants", "early_bird"), expect="clean")
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


# --- prepared runs and data, built once per benchmark run

PLACE = re.compile(r"\{([A-Z]+)\}")
FIXTURE_OF = {  # placeholder -> the prepared run (or data) a case's copy comes from
    "RUN": "cls", "RUNROOT": "cls", "XFER": "xfer", "XROOT": "xfer", "XSRC": "xfer", "XJOBS": "xfer",
    "XTARGET": "xfer", "LANG": "lang", "LANGROOT": "lang", "TRANS": "trans", "TRANSROOT": "trans", "RL": "rl",
    "RLROOT": "rl", "IMGRUN": "img", "IMGROOT": "img", "SHK": "shk", "PAR": "par", "IMG": "imgdata",
}
RUN_NEEDS = {"xfer": ["cls"], "lang": ["shk"], "trans": ["par"], "img": ["imgdata"]}


def write_text_corpus(directory: Path) -> None:
    """A character corpus with some structure: seeded words of a small alphabet."""
    import random

    words = ["to be ", "or not ", "that is ", "the question\n", "whether ", "tis nobler "]
    generator = random.Random(0)
    directory.mkdir(parents=True)
    (directory / "input.txt").write_text("".join(generator.choice(words) for _ in range(3000)))


def write_parallel_corpus(directory: Path) -> None:
    de = ["ein hund läuft", "eine katze sitzt", "der mann isst", "die frau liest"] * 25
    en = ["a dog runs", "a cat sits", "the man eats", "the woman reads"] * 25
    directory.mkdir(parents=True)
    for split in ("train", "valid", "test"):
        (directory / f"{split}.de").write_text("".join(line + "\n" for line in de), encoding="utf-8")
        (directory / f"{split}.en").write_text("".join(line + "\n" for line in en), encoding="utf-8")


def write_image_folder(directory: Path) -> None:
    """Three classes of small JPEGs whose dominant colour is the class: 4 training and 1 test image each."""
    import numpy as np
    from PIL import Image

    generator = np.random.default_rng(0)
    for split, count in (("train", 4), ("val", 1)):
        for label, name in enumerate(("cat", "dog", "emu")):
            folder = directory / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                pixels = generator.integers(0, 60, (36, 36, 3))
                pixels[..., label] += 180
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{index:03d}.jpg", quality=90)


def only_dir(path: Path, prefix: str = "") -> Path:
    return next(child for child in sorted(path.iterdir()) if child.is_dir() and child.name.startswith(prefix))


class Fixtures:
    """Prepared runs and data under one temporary root; each built at most once, on first use."""

    def __init__(self, root: Path, executable: list[str], env: dict[str, str]):
        self.root, self.executable, self.env = root, executable, env
        self.built: dict[str, Path | Exception] = {}  # fixture -> its copied root (or why it could not be built)
        self.main: dict[str, Path] = {}  # placeholder -> path inside the fixture's root

    def ticketlab(self, *argv: str) -> None:
        done = subprocess.run([*self.executable, *argv], capture_output=True, text=True, env=self.env,
                              cwd=self.root, errors="replace")
        if done.returncode != 0:
            raise RuntimeError(f"ticketlab {' '.join(argv)}: status {done.returncode}: {done.stderr[-500:]}")

    def expand(self, argv: list[str]) -> list[str]:
        return [arg.replace("{SHK}", str(self.root / "shk")).replace("{PAR}", str(self.root / "par"))
                .replace("{IMG}", str(self.root / "imgdata")).replace("{TMP}", str(self.root)) for arg in argv]

    def build(self, name: str) -> Path | Exception:
        if name in self.built:
            return self.built[name]
        for need in RUN_NEEDS.get(name, []):
            self.build(need)
        start = time.time()
        root = self.root / name
        try:
            if name == "shk":
                write_text_corpus(root)
            elif name == "par":
                write_parallel_corpus(root)
            elif name == "imgdata":
                write_image_folder(root)
            elif name == "cls":
                self.ticketlab("find", *TINY, "--root", str(root))
                self.main["RUN"] = only_dir(root)
            elif name == "xfer":
                source = self.build("cls")
                if isinstance(source, Exception):
                    raise source
                shutil.copytree(source, root)
                self.ticketlab("transfer", str(only_dir(root)), "--data.classes", "0-4", "--quiet", "--no-report",
                               "--workers", "1")
                self.main["XFER"] = only_dir(root, "transfer_")
                self.main["XSRC"] = root / self.main["RUN"].name
                self.main["XJOBS"] = self.main["XFER"] / self.main["RUN"].name
                self.main["XTARGET"] = next(path for path in root.iterdir() if path.is_dir()
                                            and path.name not in (self.main["XFER"].name, self.main["RUN"].name))
            else:
                base, placeholder = {"lang": (LANG, "LANG"), "trans": (TRANS, "TRANS"), "rl": (RL, "RL"),
                                     "img": (IMG, "IMGRUN")}[name]
                self.ticketlab("find", *self.expand(base), "--root", str(root))
                self.main[placeholder] = only_dir(root)
            self.built[name] = root
            print(f"prepared {name} in {time.time() - start:.0f} s", file=sys.stderr)
        except Exception as error:  # a fixture that cannot be built fails its cases, not the benchmark
            self.built[name] = error
            print(f"could not prepare {name}: {error}", file=sys.stderr)
        return self.built[name]


UNHASHED = ("data_dir", "cache_dir", "loader_workers")  # config fields a resume may rewrite (where the data are)
PATHS = ("source_run", "target_run")  # where a transfer's runs are: a re-run in a case's copy records the copy


def file_digest(path: Path) -> str:
    """sha256 of a file; of a config.json, of its content less the unhashed data fields, which a resume from
    another data directory (a case's copy of the data) rightly records anew; of a transfer's transfer.json and
    source.json, less the paths of the runs (a case works on a copy at another path)."""
    data = path.read_bytes()
    if path.name in ("config.json", "transfer.json", "source.json"):
        try:
            record = json.loads(data)
            for name in UNHASHED if path.name == "config.json" else ():
                record["config"]["data"].pop(name, None)
            for name in PATHS if path.name != "config.json" else ():
                record.pop(name, None)
            data = json.dumps(record, sort_keys=True).encode()
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
    return hashlib.sha256(data).hexdigest()


def hash_tree(roots: list[Path]) -> dict[str, str]:
    """Digest of every file under the roots (the lock file, which holds a PID, left out)."""
    hashes = {}
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink() and path.name != ".lock":
                hashes[str(path)] = file_digest(path)
    return hashes


def case_fixtures(case: Case) -> set[str]:
    texts = list(case.argv) + [name for name, _ in damages(case)] + list(case.absent)
    return {FIXTURE_OF[name] for text in texts for name in PLACE.findall(text) if name in FIXTURE_OF}


def damages(case: Case) -> list[tuple[str, Content]]:
    if case.damage is None:
        return []
    return list(case.damage) if isinstance(case.damage, list) else [case.damage]


def run_case(case: Case, executable: list[str], fixtures: Fixtures, env: dict[str, str],
             timeout: float) -> tuple[str, Case, str]:
    try:
        return run_one(case, executable, fixtures, env, timeout)
    except Exception as error:  # a harness bug in one case is reported, not the end of the benchmark
        return "other", case, f"harness: {type(error).__name__}: {error}"


def run_one(case: Case, executable: list[str], fixtures: Fixtures, env: dict[str, str],
            timeout: float) -> tuple[str, Case, str]:
    with tempfile.TemporaryDirectory(prefix="bad-input-") as tmp_text:
        tmp = Path(tmp_text)
        for name, content in case.files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(content)
        places = {"TMP": tmp}
        copied = []  # roots of run copies (checked for lost files)
        for name in sorted(case_fixtures(case)):
            built = fixtures.built.get(name)
            if not isinstance(built, Path):
                return "other", case, f"prepared input {name} missing: {built}"
            copy = tmp / ("copy" if name == "cls" else f"copy-{name}")
            shutil.copytree(built, copy)
            if name not in ("shk", "par", "imgdata"):
                copied.append(copy)
            for placeholder, fixture in FIXTURE_OF.items():
                if fixture != name:
                    continue
                if placeholder.endswith("ROOT") or placeholder in ("SHK", "PAR", "IMG"):
                    places[placeholder] = copy
                else:
                    places[placeholder] = copy / fixtures.main[placeholder].relative_to(built)

        def expand(text: str) -> str:
            return PLACE.sub(lambda match: str(places.get(match.group(1), match.group(0))), text)

        damaged = []  # a damaged file may be repaired (rewritten); "lost" is an undamaged file changed
        for name, content in damages(case):
            path = Path(expand(name)) if name.startswith("{") else places["RUN"] / name
            damaged.append(str(path))
            if content is None:
                path.unlink()
            elif callable(content):
                content(path)
            else:
                if isinstance(content, str):
                    content = damage_results(path.read_text(), content)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
        argv = [expand(arg) for arg in case.argv]
        before = hash_tree(copied)

        def limits():
            if case.file_limit is not None:
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (case.file_limit, case.file_limit))

        command = [*executable, *argv]
        if case.launcher == "torchrun":
            torchrun = Path(sys.executable).parent / "torchrun"
            command = [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "ticketlab", *argv]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp,
                                   preexec_fn=limits, env=env, errors="replace", start_new_session=True)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            return "hang", case, f"no answer in {timeout:.0f} s"
        finally:
            try:  # a command's own children (torchrun ranks, Ray) end with it
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        after = hash_tree(copied)
        lost = [path for path, digest in before.items() if after.get(path) != digest
                and os.path.basename(path) not in SESSION_LOGS
                and not any(path == name or path.startswith(name + os.sep) for name in damaged)]
        partial = [expand(path) for path in case.absent if Path(expand(path)).exists()]
        outcome, detail = judge(case, process.returncode, stdout, stderr)
        if lost and not case.repair:
            changed = [os.path.relpath(path, tmp) for path in lost]
            return "lost", case, f"changed or removed: {', '.join(changed[:4])}; {outcome}: {detail}"
        if partial:
            return "lost", case, f"partial output left: {', '.join(partial)}; {outcome}: {detail}"
        return outcome, case, detail


def judge(case: Case, status: int, stdout: str, stderr: str) -> tuple[str, str]:
    err = stderr.strip().splitlines()
    if case.launcher == "torchrun":  # torchrun adds its own lines (and its own traceback) around a rank's error
        if any("/ticketlab/" in line and line.strip().startswith("File ") for line in err):
            return "traceback", stderr[-600:]
        if status == 0:
            return "accepted", stderr[-300:]
        errors = [line for line in err if "ticketlab: error: " in line]
        return ("good" if errors else "other"), (errors[0] if errors else f"status {status}: {stderr[-400:]}")
    if "Traceback" in stderr:
        return "traceback", " | ".join(line.strip() for line in err[-3:])[-600:]
    one_error = status == 2 and len(err) == 1 and err[0].startswith("ticketlab: error: ")
    if case.expect == "warning":  # status 0, a warning line, no error (other notes, e.g. "one at a time", allowed)
        warned = any(line.startswith("ticketlab: warning: ") for line in err)
        good = status == 0 and warned and not any("error" in line for line in err)
        return ("good" if good else "other"), stderr[-400:] or f"status {status}, no warning"
    if case.expect in ("ok", "clean"):
        if status == 0:
            return "good", stderr[-300:]
        if case.expect == "clean" and one_error:
            return "good", err[0]
        return "other", f"status {status}: {stderr[-400:]}"
    if case.expect == "damage":
        if status == 1:
            return "good", stdout.strip().splitlines()[0] if stdout.strip() else stderr[-200:]
        return ("accepted" if status == 0 else "other"), f"status {status}: {(stdout + stderr)[-400:]}"
    if status == 0:
        return "accepted", stderr[-300:]
    if one_error:
        return "good", err[0]
    return "other", f"status {status}: {stderr[-400:]}"


def shell_line(case: Case) -> str:
    launcher = "torchrun --standalone --nproc-per-node 2 -m ticketlab" if case.launcher == "torchrun" else "ticketlab"
    line = f"{launcher} {shlex.join(case.argv)}"
    for name, content in damages(case):
        what = ("deleted" if content is None else repr(content[:20]) if isinstance(content, bytes) else
                content if isinstance(content, str) else getattr(content, "description", content.__name__))
        line += f"  [{name}: {what}]"
    return line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once (default: 2)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds before a case counts as a hang")
    parser.add_argument("--only", help="comma-separated kinds to run (see --list)")
    parser.add_argument("--select", help="cases by position after --only, e.g. 0:40,57,90: (as listed in the "
                        "progress lines, counting from 0)")
    parser.add_argument("--list", action="store_true", help="list the kinds and their numbers of cases")
    parser.add_argument("--show", action="store_true", help="print every case's stderr line")
    parser.add_argument("--failures", help="also write the cases that did not end well to this file")
    args = parser.parse_args()
    cases = corpus() + later_corpus()
    if args.list:
        for kind, count in Counter(case.kind for case in cases).items():
            print(f"{kind:16s} {count:4d}")
        return 0
    if args.only:
        kinds = set(args.only.split(","))
        unknown = kinds - {case.kind for case in cases}
        if unknown:
            parser.error(f"no such kind: {', '.join(sorted(unknown))} (see --list)")
        cases = [case for case in cases if case.kind in kinds]
    position = {id(case): index for index, case in enumerate(cases)}  # the numbers --select takes
    if args.select:
        chosen = []
        for part in args.select.split(","):
            first, _, last = part.partition(":")
            chosen += (range(len(cases))[slice(int(first or 0), int(last) if last else None)] if ":" in part
                       else [int(part)])
        cases = [cases[index] for index in chosen]
    env = {key: value for key, value in os.environ.items() if key != "TICKETLAB_DEBUG"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("OMP_NUM_THREADS", "1")
    executable = [sys.executable, "-m", "ticketlab"]
    reproduce = (f"PYTHONPATH={REPO} OMP_NUM_THREADS=1 {sys.executable} benchmarks/bad_inputs.py --jobs {args.jobs} "
                 f"--timeout {args.timeout:g}" + (f" --only '{args.only}'" if args.only else "")
                 + (f" --select '{args.select}'" if args.select else ""))
    print(f"reproduce: {reproduce}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="bad-inputs-run-") as root:
        start = time.time()
        fixtures = Fixtures(Path(root), executable, env)
        for name in sorted(set().union(*(case_fixtures(case) for case in cases)),
                           key=["shk", "par", "imgdata", "cls", "xfer", "lang", "trans", "rl", "img"].index):
            fixtures.build(name)
        prepared = hash_tree([path for path in fixtures.built.values() if isinstance(path, Path)])
        print(f"prepared in {time.time() - start:.0f} s; {len(cases)} cases", file=sys.stderr)
        done = Counter()

        def one(case: Case) -> tuple[str, Case, str]:
            result = run_case(case, executable, fixtures, env, args.timeout)
            done[result[0]] += 1
            print(f"{sum(done.values())}/{len(cases)} #{position[id(case)]} {result[0]:9s} {case.kind}: "
                  f"{shell_line(case)[:150]}",
                  file=sys.stderr, flush=True)
            return result

        with ThreadPoolExecutor(args.jobs) as pool:
            outcomes = list(pool.map(one, cases))
        touched = [path for path, digest in hash_tree([path for path in fixtures.built.values()
                                                       if isinstance(path, Path)]).items()
                   if prepared.get(path, digest) != digest]
        if touched:
            print(f"warning: cases changed the prepared inputs themselves: {touched[:5]}", file=sys.stderr)
    columns = ("good", "traceback", "accepted", "hang", "lost", "other")
    counts: dict[tuple[str, str], Counter] = {}
    failures = []
    for outcome, case, detail in outcomes:
        group = "new inputs" if case.new else CONTROLS if case.kind == CONTROLS else "first corpus"
        counts.setdefault((group, case.kind), Counter())[outcome] += 1
        if outcome != "good" or args.show:
            text = f"[{outcome}] {case.kind}: {shell_line(case)}\n    {detail.strip()[-600:]}"
            print(text)
            if outcome != "good":
                failures.append(text)
    print(f"\n{'kind':18s}" + "".join(f"{name:>10s}" for name in columns))
    for group in ("first corpus", "new inputs", CONTROLS):
        rows = {kind: counter for (in_group, kind), counter in counts.items() if in_group == group}
        if not rows:
            continue
        for kind, counter in rows.items():
            print(f"{kind:18s}" + "".join(f"{counter[name]:>10d}" for name in columns))
        subtotal = sum(rows.values(), Counter())
        print(f"{'= ' + group:18s}" + "".join(f"{subtotal[name]:>10d}" for name in columns) + "\n")
    total = sum(counts.values(), Counter())
    print(f"{'total':18s}" + "".join(f"{total[name]:>10d}" for name in columns) + f"   ({len(outcomes)} cases, "
          f"{time.time() - start:.0f} s)")
    print(f"reproduce: {reproduce}")
    if args.failures:
        Path(args.failures).write_text(f"# {reproduce}\n\n" + "\n".join(failures) + "\n")
    return 0 if total["good"] == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
