"""Property-based checks of the command line: a bad value for any flag or config field ends with status 2 and one
stderr line (no traceback), before anything is trained or written; arbitrary text never escapes as an exception.

Runs through `ticketlab.cli.main` in this process: `config` (resolves and validates, never trains) and, for a
subset, `find` with a root that must stay absent. Derandomized, no example database: deterministic and offline.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ticketlab.cli import main
from ticketlab.config import INIT_NAMES
from ticketlab.lottery.variants import variant_names
from ticketlab.tasks import DATASET_NAMES, MODEL_NAMES

SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# field -> (low, high, low open, high open) of the numbers it accepts
FLOAT_RANGES = {
    "train.lr": (0, 100, True, False), "train.gamma": (0, math.inf, True, True),
    "train.weight_decay": (0, 1, False, False), "train.clip_grad_norm": (0, math.inf, True, True),
    "prune.rate": (0, 1, True, True), "prune.output_rate": (0, 1, True, True),
    "prune.target_remaining_percent": (0, 100, True, False), "model.dropout": (0, 1, False, True),
}
INT_MINIMUMS = {"train.batch_size": 1, "data.validation_size": 1, "data.train_size": 1, "data.sequence_length": 1,
                "model.embedding_dim": 1, "prune.levels": 0, "trials": 1}
STEP_FIELDS = ("train.steps", "train.warmup", "train.eval_every", "prune.rewind", "prune.finetune_steps")
CHOICE_FIELDS = {"model.name": None, "data.name": None, "train.optimizer": ("sgd", "adam", "adamw"),
                 "train.schedule": ("constant", "step", "cosine"), "prune.scope": ("layerwise", "global"),
                 "model.init": None, "prune.strategy": ("magnitude",), "task": ("classification", "language")}
BOOL_FIELDS = ("train.nesterov", "data.augment", "data.download", "model.tie_weights", "prune.rewind_optimizer_state")
OPTIONAL = {"train.clip_grad_norm", "prune.output_rate", "prune.target_remaining_percent", "data.train_size",
            "model.embedding_dim", "prune.finetune_steps"}
UNSET_TEXTS = ("none", "null", "")
_KNOWN_NAMES = set(DATASET_NAMES) | set(MODEL_NAMES) | set(INIT_NAMES) | {"classification", "language"}
_VARIANTS = variant_names()
WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_:-./ ", min_size=1, max_size=12)
NON_FINITE = st.sampled_from(["nan", "NaN", "inf", "-inf", "Infinity", "1e400", "-1e400"])


def outside(low: float, high: float, low_open: bool, high_open: bool):
    below = st.floats(max_value=low, allow_nan=False, allow_infinity=False, exclude_max=not low_open)
    above = st.floats(min_value=high, allow_nan=False, allow_infinity=False, exclude_min=not high_open) \
        if math.isfinite(high) else st.nothing()
    return st.one_of(below, above).map(repr)


def not_a_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return text.strip().lower() not in UNSET_TEXTS
    return False


@st.composite
def bad_setting(draw) -> tuple[str, str]:
    """A (field, text) that the config must refuse."""
    kind = draw(st.sampled_from(["float", "int", "step", "choice", "bool", "variants"]))
    if kind == "float":
        field = draw(st.sampled_from(sorted(FLOAT_RANGES)))
        value = draw(st.one_of(NON_FINITE, outside(*FLOAT_RANGES[field]), WORDS.filter(not_a_number)))
    elif kind == "int":
        field = draw(st.sampled_from(sorted(INT_MINIMUMS)))
        low = INT_MINIMUMS[field]
        value = draw(st.one_of(st.integers(max_value=low - 1).map(str), st.sampled_from(["1.5", "2e3", "nan"]),
                               WORDS.filter(not_a_number)))
    elif kind == "step":
        field = draw(st.sampled_from(STEP_FIELDS))
        valid = re.compile(r"^\s*\d+\s*(it|ep)?\s*$", re.ASCII)
        value = draw(st.one_of(
            st.text(min_size=1, max_size=10).filter(lambda text: not valid.match(text) and "\0" not in text
                                                     and text.strip().lower() not in UNSET_TEXTS),
            st.integers(min_value=31, max_value=60).map(lambda digits: "9" * digits + "it"),
            st.sampled_from(["-5it", "1.5it", "5 epochs", "5ep5", "it"])))
        if field in ("train.steps", "train.eval_every") and draw(st.booleans()):
            value = draw(st.sampled_from(["0it", "0ep", "0"]))
    elif kind == "choice":
        field = draw(st.sampled_from(sorted(CHOICE_FIELDS)))
        value = draw(WORDS.filter(lambda text: text not in (CHOICE_FIELDS[field] or ())
                                  and not text.startswith("custom:") and text.strip() not in _KNOWN_NAMES))
    elif kind == "bool":
        field = draw(st.sampled_from(BOOL_FIELDS))
        value = draw(WORDS.filter(lambda text: text.lower() not in ("true", "1", "yes", "on", "false", "0", "no",
                                                                     "off")))
    else:
        field = "variants"
        value = draw(st.one_of(WORDS.filter(lambda text: text.strip(" ,") and not set(
            item.strip() for item in text.split(",") if item.strip()) <= set(_VARIANTS)),
            st.sampled_from(["iterative_reset,iterative_reset", ",", "finetune,,finetune"])))
    return field, value


def run(arguments: list[str]) -> tuple[int, str, list[str]]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(arguments)
    return code, out.getvalue(), err.getvalue().strip().splitlines()


def assert_refused(code: int, out: str, err: list[str], arguments) -> None:
    assert code == 2, (arguments, out, err)
    assert len(err) == 1 and err[0].startswith("ticketlab: error: "), (arguments, err)
    assert "Traceback" not in err[0] and out == "", (arguments, out)


def flag(field: str, value: str) -> list[str]:
    return [f"--{field}", value]  # top-level fields (trials, seed, variants, task) have shortcut flags of that name


@settings(max_examples=150, **SETTINGS)
@given(bad_setting())
def test_config_refuses_every_bad_value_in_one_line(setting):
    field, value = setting
    arguments = ["config", *flag(field, value)]
    assert_refused(*run(arguments), arguments)


@pytest.fixture(scope="module")
def absent_root(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / "runs"


@st.composite
def bad_run_flag(draw) -> list[str]:
    """A flag of `find` that must be refused before any data is loaded."""
    which = draw(st.sampled_from(["workers", "population", "checkpoint", "device", "setting"]))
    if which in ("workers", "population"):
        return [f"--{which}", str(draw(st.one_of(st.integers(max_value=0), st.integers(min_value=100_001))))]
    if which == "checkpoint":
        return ["--checkpoint-every", draw(st.one_of(st.sampled_from(["nan", "-inf", "inf"]),
                                                     st.floats(max_value=-1e-9, allow_nan=False).map(repr)))]
    if which == "device":
        return ["--device", draw(WORDS.filter(lambda text: text not in ("auto", "cpu", "cuda", "mps")
                                              and not re.fullmatch(r"cuda:\d+", text) and not text.startswith("-")))]
    return flag(*draw(bad_setting()))


@settings(max_examples=40, **SETTINGS)
@given(bad_run_flag())
def test_find_refuses_bad_flags_before_writing_anything(absent_root, arguments):
    arguments = ["find", "--root", str(absent_root), "--quiet", *arguments]
    assert_refused(*run(arguments), arguments)
    assert not absent_root.exists()


FIELDS = sorted(set(FLOAT_RANGES) | set(INT_MINIMUMS) | set(STEP_FIELDS) | set(CHOICE_FIELDS) | set(BOOL_FIELDS)
                | {"variants", "model.hidden", "train.milestones", "prune.layer_rates", "seed", "data.data_dir"})


@settings(max_examples=120, **SETTINGS)
@given(st.sampled_from(FIELDS), st.text(max_size=20).filter(lambda text: "\0" not in text))
def test_any_text_is_accepted_or_refused_in_one_line(field, value):
    arguments = ["config", *flag(field, value)]
    code, out, err = run(arguments)
    if code == 0:
        json.loads(out)
    else:
        assert_refused(code, out, err, arguments)
