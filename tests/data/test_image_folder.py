"""Image folders (the ImageNet layout): scanning, splits, transforms, seeded batches, bad input, a whole run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import ticketlab
from ticketlab.cli import main
from ticketlab.data.image_folder import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    center_box,
    load_image,
    load_image_folder,
    random_resized_box,
    to_normalized_tensor,
)
from ticketlab.errors import DataError
from ticketlab.models import ImageNetResNet, initialize
from ticketlab.training.loop import TrainingInterrupted, evaluate_split, train_model, training_batches

CLASSES = ("cat", "dog", "emu")


def write_folder(root, train_per_class=8, val_per_class=3, seed=0):
    """Small JPEGs of random sizes whose dominant colour channel is the class."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                height, width = rng.integers(36, 60, size=2)
                pixels = rng.integers(0, 60, (height, width, 3))
                pixels[..., label] += 180
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{index:03d}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("images"))


def test_scan_sorted_classes_and_held_out_validation(folder):
    data = load_image_folder(folder, validation_size=5, image_size=32, loader_workers=0)
    assert data.classes == list(CLASSES) and data.num_classes == 3
    assert (data.num_train, len(data.val[0]), len(data.test[0])) == (19, 5, 9)
    train, val = set(data.train[0]), set(data.val[0])
    assert not train & val and len(train | val) == 24
    for paths, labels in (data.train, data.val, data.test):  # labels are the sorted class folder's index
        assert all(CLASSES[label] == path.parent.name for path, label in zip(paths, labels))
    again = load_image_folder(folder, validation_size=5, image_size=32, loader_workers=0)
    assert again.val[0] == data.val[0]  # the held-out choice is fixed
    subset = load_image_folder(folder, validation_size=2, classes=(2, 0), loader_workers=0)
    assert subset.classes == ["emu", "cat"]
    assert all(("emu", "cat")[label] == path.parent.name for path, label in zip(*subset.test))


def test_evaluation_transform_geometry_and_normalization(tmp_path):
    assert center_box(40, 60, 32) == ((36, 54), (2, 11, 34, 43))  # shorter side 32/0.875 = 36, centre crop
    assert center_box(300, 256, 224) == ((300, 256), (38, 16, 262, 240))
    path = tmp_path / "flat.png"  # lossless, one colour: the normalized value is exact
    Image.fromarray(np.full((50, 70, 3), (10, 128, 250), np.uint8)).save(path)
    tensor = to_normalized_tensor(load_image(path, 32, seed=None))
    assert tensor.shape == (3, 32, 32)
    expected = (np.array([10, 128, 250]) / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(tensor.mean(dim=(1, 2)).numpy(), expected, rtol=1e-5)


def test_random_resized_box_stays_in_range():
    rng = np.random.default_rng(0)
    for _ in range(500):
        width, height = (int(v) for v in rng.integers(20, 400, size=2))
        left, top, right, bottom = random_resized_box(width, height, rng)
        assert 0 <= left < right <= width and 0 <= top < bottom <= height
        area, aspect = (right - left) * (bottom - top) / (width * height), (right - left) / (bottom - top)
        if (right - left, bottom - top) != (width, height):  # a sampled crop, not the fallback
            assert 0.07 <= area <= 1.0 and 0.7 <= aspect <= 1.4
    assert random_resized_box(1000, 10, np.random.default_rng(1)) == (493, 0, 506, 10)  # fallback: ratio 4/3


def test_batches_seeded_and_independent_of_workers(folder):
    serial = load_image_folder(folder, validation_size=5, image_size=32, loader_workers=0)
    parallel = load_image_folder(folder, validation_size=5, image_size=32, loader_workers=2)
    steps = [(torch.tensor([3, 1, 4, 1]), 11, 0), (torch.tensor([5, 9, 2, 6]), 12, 0)]
    first = list(serial.train_batches(steps))
    second = list(parallel.train_batches(steps))
    for (inputs_a, labels_a), (inputs_b, labels_b) in zip(first, second):
        assert torch.equal(inputs_a, inputs_b) and torch.equal(labels_a, labels_b)
    assert not torch.equal(first[0][0][1], first[0][0][3])  # the same image, another seed: another crop
    other = list(serial.train_batches([(torch.tensor([3, 1, 4, 1]), 99, 0)]))
    assert not torch.equal(other[0][0], first[0][0])


def test_rank_shards_decode_slices_of_the_global_batch(folder):
    data = load_image_folder(folder, validation_size=5, image_size=32, loader_workers=0)
    whole = list(training_batches(data, 3, 5, 8, data_seed=4))
    shards = [list(training_batches(data, 3, 5, 8, data_seed=4, shard=(rank, 2))) for rank in (0, 1)]
    for step, (inputs, labels) in enumerate(whole):
        assert torch.equal(torch.cat([shards[0][step][0], shards[1][step][0]]), inputs)
        assert torch.equal(torch.cat([shards[0][step][1], shards[1][step][1]]), labels)


def _tiny_resnet(seed=0):
    return initialize(ImageNetResNet(18, num_classes=3, width=4), "kaiming_normal", seed)


def test_resume_after_kill_is_exact(folder, tmp_path):
    data = load_image_folder(folder, validation_size=5, image_size=32, loader_workers=0)
    config = ticketlab.preset("resnet18_image_folder_tiny").replace(**{
        "train.steps": "8it", "train.eval_every": "2it", "train.batch_size": 4, "train.milestones": ["6it"]}).train
    generator = torch.Generator().manual_seed(0)
    masks = {name: (torch.rand(p.shape, generator=generator) > 0.3).float()
             for name, p in _tiny_resnet().named_parameters() if p.ndim > 1}
    whole = _tiny_resnet()
    result = train_model(whole, data, config, masks=masks, data_seed=5)
    killed = _tiny_resnet()
    with pytest.raises(TrainingInterrupted):
        train_model(killed, data, config, masks=masks, data_seed=5, job_dir=tmp_path, checkpoint_interval_s=0,
                    stop_after_step=5)
    resumed = _tiny_resnet()
    again = train_model(resumed, data, config, masks=masks, data_seed=5, job_dir=tmp_path)
    for name, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
    assert again.to_dict() == result.to_dict()
    for name, mask in masks.items():
        assert torch.all(dict(resumed.named_parameters())[name][mask == 0] == 0)
    loss, accuracy = evaluate_split(resumed, data, "test")
    assert 0 <= accuracy <= 1 and loss > 0


def test_unreadable_image_is_one_line(tmp_path):
    root = write_folder(tmp_path / "bad", train_per_class=3, val_per_class=1)
    (root / "train" / "cat" / "000.jpg").write_bytes(b"not a jpeg")
    data = load_image_folder(root, validation_size=1, image_size=32, loader_workers=1)
    with pytest.raises(DataError) as error:
        list(data.evaluate_batches("train"))
    assert "000.jpg is not a readable image" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("damage, expected", [
    (lambda root: None, "needs --data-dir"),
    (lambda root: (root / "val" / "dog").rename(root / "val" / "wolf"), "other class folders than train/"),
    (lambda root: [path.unlink() for path in (root / "train" / "emu").iterdir()], "holds no images"),
    (lambda root: __import__("shutil").rmtree(root / "val"), "is not a directory"),
    (lambda root: [__import__("shutil").rmtree(root / split / name) for split in ("train", "val")
                   for name in ("dog", "emu")], "holds 1 class folder ('cat'); a classifier needs at least 2 classes"),
])
def test_bad_folders_exit_2_in_one_line(tmp_path, capsys, damage, expected):
    root = write_folder(tmp_path / "data", train_per_class=3, val_per_class=1)
    damage(root)
    args = ["find", "--preset", "resnet18_image_folder_tiny", "--root", str(tmp_path / "runs"), "--quiet"]
    if "--data-dir" not in expected:
        args += ["--data-dir", str(root)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1, err
    assert not list((tmp_path / "runs").glob("*"))  # no run directory left holding only its lock


def test_find_on_an_image_folder_end_to_end(tmp_path, capsys):
    root = write_folder(tmp_path / "data")
    args = ["find", "--preset", "resnet18_image_folder_tiny", "--data-dir", str(root), "--root",
            str(tmp_path / "runs"), "--steps", "6it", "--train.milestones", "4it", "--train.eval_every", "3it", "--levels", "1", "--quiet",
            "--data.loader_workers", "1"]
    assert main(args) == 0
    run_dir = next((tmp_path / "runs").iterdir())
    listing = json.loads((run_dir / "image_folder.json").read_text())
    assert (listing["classes"], listing["train"], listing["test"]) == (3, 16, 9)
    rows = (run_dir / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 + 3  # header, three variants at levels 0 (the dense job) and 1
    capsys.readouterr()
    assert main(args) == 0  # finished: trains nothing
    new_image = root / "train" / "cat" / "extra.jpg"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(new_image)
    assert main(args) == 2  # another dataset under the same run directory is refused
    assert "holds other files than the image folder" in capsys.readouterr().err


def test_one_class_is_refused_by_the_installed_command(tmp_path):
    """A folder with a single class would train a classifier with nothing to tell apart: refused in one line."""
    import shutil
    import subprocess
    import sys

    root = write_folder(tmp_path / "data", train_per_class=2, val_per_class=1)
    for split in ("train", "val"):
        for name in ("dog", "emu"):
            shutil.rmtree(root / split / name)
    with pytest.raises(DataError, match="a classifier needs at least 2 classes"):
        load_image_folder(root, validation_size=1, loader_workers=0)
    done = subprocess.run([sys.executable, "-m", "ticketlab", "find", "--preset", "resnet18_image_folder_tiny",
                           "--data-dir", str(root), "--root", str(tmp_path / "runs"), "--quiet"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "holds 1 class folder ('cat'); a classifier needs at least 2 classes" in done.stderr
    assert not list((tmp_path / "runs").glob("*"))


def _tiny_find(root, runs) -> list[str]:
    return ["find", "--preset", "resnet18_image_folder_tiny", "--data-dir", str(root), "--root", str(runs),
            "--steps", "2it", "--train.milestones", "1it", "--train.warmup", "0it", "--prune.rewind", "0it",
            "--train.eval_every", "1it", "--levels", "1", "--variants", "iterative_reset", "--data.validation_size",
            "3", "--data.loader_workers", "0", "--train.batch_size", "4", "--quiet", "--no-report"]


@pytest.mark.parametrize("content", [b"not a jpeg", b"", "truncated"])
def test_an_unreadable_image_is_the_only_line(tmp_path, capsys, content):
    """The decoding error of a bad image is the run's only line on stderr (no note about how jobs are planned)."""
    root = write_folder(tmp_path / "data", train_per_class=3, val_per_class=1)
    for split in ("train", "val"):  # every image of the class is bad: whichever is drawn first fails
        for path in (root / split / "emu").iterdir():
            path.write_bytes(path.read_bytes()[: len(path.read_bytes()) * 3 // 10] if content == "truncated"
                             else content)
    assert main(_tiny_find(root, tmp_path / "runs")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ticketlab: error: ") and "is not a readable image" in err[0], err


@pytest.mark.parametrize("content", [b"\xff{", b"{cut", b"[1, 2]"])
def test_a_damaged_image_folder_json_is_refused_in_one_line(tmp_path, capsys, content):
    root = write_folder(tmp_path / "data", train_per_class=3, val_per_class=1)
    assert main(_tiny_find(root, tmp_path / "runs")) == 0
    run_dir = next((tmp_path / "runs").iterdir())
    (run_dir / "trial_0" / "level_01" / "iterative_reset" / "result.json").unlink()  # unfinished: resumes
    listing = run_dir / "image_folder.json"
    listing.write_bytes(content)
    capsys.readouterr()
    assert main(_tiny_find(root, tmp_path / "runs")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"ticketlab: error: {listing} is damaged ("), err
    assert "delete the file and run the same command again to have it rewritten" in err[0]
    assert listing.read_bytes() == content  # left as it was
    listing.unlink()  # as the message says: the listing is rewritten and the run finishes
    assert main(_tiny_find(root, tmp_path / "runs")) == 0
    assert json.loads(listing.read_text())["train"] == 9 - 3
