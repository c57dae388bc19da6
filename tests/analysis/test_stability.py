"""Stability analyses: distances against numpy, the run-directory analysis against its stored weights."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
import torch

from ticketlab.analysis.copies import data_order_stability, train_from
from ticketlab.analysis.distance import weight_distance
from ticketlab.analysis.stability import StabilitySettings, stability_analysis
from ticketlab.config import TrainConfig
from ticketlab.errors import ConfigError, TicketlabError
from ticketlab.pruning import prunable_weights
from ticketlab.seeds import derive_seed
from ticketlab.store import load_tensors

SETTINGS = StabilitySettings(rewind_steps=("0it", "10it"), points=5)


def read_csv(path) -> list[dict]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def numpy_distance(a: dict, b: dict, names, masks=None) -> tuple[float, float, float]:
    """(l2, l2 / mean norm, angle in degrees) over `names`, keeping only mask == 1 entries."""
    flat_a, flat_b = [], []
    for name in names:
        keep = np.ones(a[name].shape, bool) if masks is None or name not in masks else masks[name].numpy() > 0
        flat_a.append(a[name].double().numpy()[keep])
        flat_b.append(b[name].double().numpy()[keep])
    va, vb = np.concatenate(flat_a), np.concatenate(flat_b)
    l2 = np.linalg.norm(va - vb)
    norm_a, norm_b = np.linalg.norm(va), np.linalg.norm(vb)
    angle = np.degrees(np.arccos(np.clip(va @ vb / (norm_a * norm_b), -1, 1)))
    return l2, l2 / ((norm_a + norm_b) / 2), angle


def test_weight_distance_matches_numpy():
    generator = torch.Generator().manual_seed(0)
    a = {"w": torch.randn(4, 5, generator=generator), "v": torch.randn(3, generator=generator),
         "count": torch.tensor(3)}
    b = {"w": torch.randn(4, 5, generator=generator), "v": torch.randn(3, generator=generator),
         "count": torch.tensor(7)}
    masks = {"w": (torch.rand(4, 5, generator=generator) > 0.4).float()}
    distance = weight_distance(a, b, names=["w", "v"], masks=masks)
    expected = numpy_distance(a, b, ["w", "v"], masks)
    assert (distance.l2, distance.relative, distance.angle_degrees) == pytest.approx(expected, rel=1e-12)
    assert distance.entries == int(masks["w"].sum()) + 3
    default = weight_distance(a, b)  # every float tensor: the integer counter is skipped
    assert default.l2 == pytest.approx(numpy_distance(a, b, ["w", "v"])[0], rel=1e-12)
    assert weight_distance(a, b, masks=masks).entries == int(masks["w"].sum())  # names default to the masks'
    with pytest.raises(ConfigError, match="missing"):
        weight_distance(a, b, names=["nope"])


def test_copies_with_the_same_data_order_are_identical(tiny_run):
    data, model = tiny_run.data, tiny_run.model()
    config = TrainConfig(optimizer="sgd", lr=0.1, batch_size=20, steps="15it", eval_every="15it")
    pair = data_order_stability(model, data, config, data_seeds=(4, 4), points=4)
    assert (pair.distance.l2, pair.distance.relative) == (0.0, 0.0)
    assert pair.path.barriers == {"train": 0.0, "test": 0.0}
    different = data_order_stability(model, data, config, data_seeds=(4, 5), points=4)
    assert different.distance.l2 > 0


@pytest.fixture(scope="module")
def analysed(tiny_run):
    result = stability_analysis(tiny_run.run_dir, SETTINGS, model=tiny_run.model(), data=tiny_run.data,
                                progress=False)
    return tiny_run, result


def test_analysis_writes_every_file(analysed):
    run, result = analysed
    out = run.run_dir / "analysis" / "stability"
    assert set(result.files) == {"stability_csv", "interpolation_csv", "interpolation_png", "barrier_png",
                                 "distances_png"}
    for path in result.files.values():
        assert path.parent == out and path.stat().st_size > 0
    rows = read_csv(out / "stability.csv")
    # 2 trials x levels 0, 1, 2 x rewind steps 0, 10
    assert len(rows) == len(result.rows) == 12
    assert {(int(r["level"]), int(r["rewind_step"])) for r in rows} == {(l, k) for l in (0, 1, 2) for k in (0, 10)}
    assert len(read_csv(out / "interpolation.csv")) == 12 * SETTINGS.points


def test_rewind_point_replays_the_dense_run(analysed):
    run, _ = analysed
    for trial in (0, 1):
        stored = load_tensors(run.run_dir / f"trial_{trial}/level_00/dense/weights_rewind.safetensors")
        replayed = load_tensors(run.run_dir / f"analysis/stability/rewind_points/trial_{trial}/step_0000010/"
                                "weights.safetensors")
        assert stored.keys() == replayed.keys()
        assert all(torch.equal(stored[name], replayed[name]) for name in stored)


def test_continuing_from_the_rewind_point_reproduces_the_dense_run(analysed):
    """W_10 plus the dense run's data order and optimizer state must train to the dense run's final weights."""
    run, _ = analysed
    folder = run.run_dir / "analysis/stability/rewind_points/trial_0/step_0000010"
    model = run.model()
    model.load_state_dict(load_tensors(folder / "weights.safetensors"))
    final = train_from(model, run.data, run.config.train, data_seed=derive_seed(run.config.seed, 0, "data_order"),
                       start_step=10, optimizer_state=load_tensors(folder / "optimizer.safetensors"))
    dense_final = load_tensors(run.run_dir / "trial_0/level_00/dense/weights_final.safetensors")
    for name, value in dense_final.items():
        assert torch.equal(final[name], value), name


def test_rows_match_the_stored_copies(analysed):
    run, _ = analysed
    out = run.run_dir / "analysis" / "stability"
    rows = read_csv(out / "stability.csv")
    path_rows = read_csv(out / "interpolation.csv")
    names = list(prunable_weights(run.model()))
    for row in rows:
        trial, level, step = int(row["trial"]), int(row["level"]), int(row["rewind_step"])
        network = "dense" if level == 0 else "iterative_reset"
        pair = out / f"copies/trial_{trial}/rewind_{step:07d}/level_{level:02d}_{network}"
        a = load_tensors(pair / "copy_0/weights_final.safetensors")
        b = load_tensors(pair / "copy_1/weights_final.safetensors")
        mask = None if level == 0 else {
            n: m.float() for n, m in load_tensors(run.run_dir / f"trial_{trial}/level_{level:02d}/"
                                                  "iterative_reset/mask.safetensors").items()}
        expected = numpy_distance(a, b, names, mask)
        got = (float(row["data_order_l2"]), float(row["data_order_relative"]), float(row["data_order_angle_deg"]))
        assert got == pytest.approx(expected, rel=1e-9)
        if level > 0:
            dense = load_tensors(out / f"copies/trial_{trial}/rewind_{step:07d}/level_00_dense/copy_0/"
                                 "weights_final.safetensors")
            assert float(row["pruning_l2"]) == pytest.approx(numpy_distance(dense, a, names, mask)[0], rel=1e-9)
            for name, value in a.items():  # the subnetwork kept its mask while training
                if name in mask:
                    assert torch.all(value[mask[name] == 0] == 0)
        else:
            assert row["pruning_l2"] == ""
        path = [r for r in path_rows if (r["trial"], r["level"], r["rewind_step"]) == (row["trial"], row["level"],
                                                                                       row["rewind_step"])]
        for split in ("train", "test"):
            errors = [float(r[f"{split}_error"]) for r in path]
            assert float(row[f"{split}_barrier"]) == pytest.approx(max(errors) - (errors[0] + errors[-1]) / 2,
                                                                   abs=1e-12)
        assert [float(r["alpha"]) for r in path] == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_copies_start_where_they_should(analysed):
    run, _ = analysed
    copies = run.run_dir / "analysis/stability/copies/trial_1/rewind_0000010"
    seeds = set()
    for level_dir in ("level_00_dense", "level_02_iterative_reset"):
        for index in (0, 1):
            record = json.loads((copies / level_dir / f"copy_{index}" / "result.json").read_text())
            assert record["start_step"] == 10 and record["final_iteration"] == 30
            seeds.add((index, record["data_seed"]))
    assert len({seed for _, seed in seeds}) == 2  # copy 0 (and 1) share a data order across levels


def test_rerun_reuses_the_copies(analysed):
    run, first = analysed
    copy_file = (run.run_dir / "analysis/stability/copies/trial_0/rewind_0000000/level_01_iterative_reset/"
                 "copy_1/weights_final.safetensors")
    before = os.stat(copy_file).st_mtime_ns
    again = stability_analysis(run.run_dir, SETTINGS, model=run.model(), data=run.data, progress=False,
                               figures=False)
    assert again.trained_copies == 0
    assert os.stat(copy_file).st_mtime_ns == before
    assert again.rows == first.rows


def test_user_errors_are_one_line(analysed, tmp_path):
    run, _ = analysed
    with pytest.raises(ConfigError, match="custom model"):
        stability_analysis(run.run_dir, SETTINGS, progress=False)
    with pytest.raises(ConfigError, match="rewind step 30"):
        stability_analysis(run.run_dir, StabilitySettings(rewind_steps=("30it",)), model=run.model(),
                           data=run.data, progress=False)
    with pytest.raises(ConfigError, match="level 7"):
        stability_analysis(run.run_dir, StabilitySettings(levels=(7,)), model=run.model(), data=run.data,
                           progress=False)
    with pytest.raises(ConfigError, match="variant"):
        StabilitySettings(variant="iterative_reinit").validate()
    with pytest.raises(TicketlabError, match="not a run directory"):
        stability_analysis(tmp_path, SETTINGS, progress=False)
