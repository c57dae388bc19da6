"""A Hugging Face image classifier through the command line: `--model.name hf_image --model.pretrained_dir DIR` on
an image folder. θ0 is the saved weights (a head of another class count drawn from the trial seed), tickets rewind
to θ_pre, masks stay exact under AdamW with weight decay, the control draws fresh weights, SNIP scores it, export
writes it, and bad input is one line with status 2 before anything trains."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ticketlab import cli
from ticketlab.store import load_tensors

from tests.data.test_image_folder import write_folder

pytest.importorskip("transformers")


def save_tiny_vit(directory: Path, num_labels: int = 3, seed: int = 0) -> Path:
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(seed)
    ViTForImageClassification(ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=32,
                                        num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                        num_labels=num_labels)).save_pretrained(directory)
    return directory


def find_args(model_dir: Path, images: Path, root: Path, *extra: str) -> list[str]:
    return ["find", "--model.name", "hf_image", "--model.pretrained_dir", str(model_dir), "--data.name",
            "image_folder", "--data-dir", str(images), "--data.image_size", "16", "--data.validation_size", "3",
            "--data.loader_workers", "0", "--train.optimizer", "adamw", "--train.lr", "1e-3",
            "--train.weight_decay", "0.1", "--train.batch_size", "4", "--steps", "3it", "--train.eval_every", "3it",
            "--levels", "1", "--rewind", "0it", "--trials", "2", "--variants", "iterative_reset,iterative_reinit,snip",
            "--root", str(root), "--quiet", "--no-report", "--workers", "1", *extra]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return write_folder(tmp_path_factory.mktemp("images") / "folder", train_per_class=4, val_per_class=2)


def _pretrained(model_dir: Path, num_labels: int | None = None) -> dict[str, torch.Tensor]:
    from ticketlab.tasks.hf.vision import ImageClassifier

    return {name: value.clone() for name, value in ImageClassifier(model_dir, num_labels).state_dict().items()}


def test_imp_on_a_saved_vit_rewinds_to_its_pretrained_weights_through_the_cli(images, tmp_path, capsys):
    model_dir = save_tiny_vit(tmp_path / "vit")
    root = tmp_path / "runs"
    assert cli.main(find_args(model_dir, images, root)) == 0, capsys.readouterr().err
    (run_dir,) = [path for path in root.iterdir() if path.is_dir()]
    pretrained = _pretrained(model_dir)
    for trial in ("trial_0", "trial_1"):
        dense = load_tensors(run_dir / trial / "level_00" / "dense" / "weights_init.safetensors")
        assert set(dense) == set(pretrained) and all(torch.equal(dense[name], pretrained[name]) for name in dense)
        ticket = run_dir / trial / "level_01" / "iterative_reset"
        mask = load_tensors(ticket / "mask.safetensors")
        assert {"vit.layers.0.attention.q_proj.weight", "vit.layers.1.mlp.fc2.weight"} <= set(mask)
        start, final = (load_tensors(ticket / f"weights_{which}.safetensors") for which in ("init", "final"))
        assert all(torch.equal(start[name], pretrained[name] * mask[name].to(start[name].dtype)) for name in mask)
        assert all(torch.all(final[name][~mask[name].bool()] == 0) for name in mask)  # AdamW, weight decay 0.1
        kept = sum(int(keep.sum()) for keep in mask.values()) / sum(keep.numel() for keep in mask.values())
        assert kept == pytest.approx(0.8, abs=0.01)
        reinit = load_tensors(run_dir / trial / "level_01" / "iterative_reinit" / "weights_init.safetensors")
        name = next(name for name in mask if "intermediate" in name or "fc1" in name)
        assert not torch.equal(reinit[name], start[name])  # the control draws fresh weights
        cls_token = next(name for name in pretrained if name.endswith("cls_token"))
        assert not torch.equal(reinit[cls_token], pretrained[cls_token])  # ... all of them, the model's own way
        snip = load_tensors(run_dir / trial / "level_01" / "snip" / "mask.safetensors")
        assert set(snip) == set(mask) and any(not torch.equal(snip[name], mask[name]) for name in mask)
    # a finished run trains nothing again; export writes the ticket under the model's own names
    before = (run_dir / "results.csv").read_bytes()
    assert cli.main(find_args(model_dir, images, root)) == 0
    assert (run_dir / "results.csv").read_bytes() == before
    output = tmp_path / "ticket.safetensors"
    assert cli.main(["export", str(run_dir), "--level", "1", "--format", "dense", "--output", str(output)]) == 0
    from safetensors.torch import load_file
    from transformers import ViTForImageClassification

    exported = load_file(str(output))
    mask = load_tensors(run_dir / "trial_0" / "level_01" / "iterative_reset" / "mask.safetensors")
    assert all(torch.all(exported[name][~mask[name].bool()] == 0) for name in mask)
    plain = ViTForImageClassification.from_pretrained(str(model_dir))  # the ticket loads without ticketlab
    plain.load_state_dict(exported)
    assert torch.equal(plain.vit.layers[0].attention.q_proj.weight, exported["vit.layers.0.attention.q_proj.weight"])


def test_a_head_of_another_class_count_is_drawn_from_the_trial_seed(images, tmp_path, capsys):
    model_dir = save_tiny_vit(tmp_path / "vit10", num_labels=10)
    root = tmp_path / "runs"
    assert cli.main(find_args(model_dir, images, root, "--variants", "iterative_reset", "--levels", "0")) == 0, \
        capsys.readouterr().err
    (run_dir,) = [path for path in root.iterdir() if path.is_dir()]
    saved = _pretrained(model_dir)
    starts = [load_tensors(run_dir / trial / "level_00" / "dense" / "weights_init.safetensors")
              for trial in ("trial_0", "trial_1")]
    for start in starts:
        assert start["classifier.weight"].shape == (3, 32)
        assert all(torch.equal(start[name], saved[name]) for name in start if not name.startswith("classifier"))
    assert not torch.equal(starts[0]["classifier.weight"], starts[1]["classifier.weight"])


@pytest.mark.parametrize("case", ["no_model", "image_size", "no_name", "name_without_dir"])
def test_bad_input_is_one_line_and_status_2(images, tmp_path, capsys, case):
    model_dir = save_tiny_vit(tmp_path / "vit")
    root = tmp_path / "runs"
    args = {
        "no_model": find_args(tmp_path, images, root),
        "image_size": find_args(model_dir, images, root, "--data.image_size", "24"),
        "no_name": find_args(model_dir, images, root, "--model.name", "resnet18"),
        "name_without_dir": [arg for arg in find_args(model_dir, images, root)
                             if arg not in ("--model.pretrained_dir", str(model_dir))],
    }[case]
    capsys.readouterr()
    assert cli.main(args) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error, error
    expected = {"no_model": "holds no Hugging Face model", "image_size": "takes 3x16x16 images",
                "no_name": "goes with model.name 'hf_image'", "name_without_dir": "goes with model.name 'hf_image'"}
    assert expected[case] in error, error
    assert not list(root.glob("*/trial_0/level_00/dense/result.json"))
