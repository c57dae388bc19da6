"""Pre-trained starts: `load_torchvision_weights` loads a local safetensors state_dict by parameter name (one-line
errors for other names and for a head of another class count), and `model.weights` makes it every trial's θ0 on the
classification task: the dense run starts from it, tickets reset to it (`rewind 0it` = θ_pre) and the
reinitialization control draws fresh weights. ticketlab's `ImageNetResNet` has torchvision's layout, so these run
without torchvision; the torchvision and timm constructors are checked where those packages are installed."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from ticketlab.cli import main
from ticketlab.errors import DataError
from ticketlab.models import ImageNetResNet, load_torchvision_weights
from ticketlab.store import load_tensors


def _pretrained(path, num_classes=3, width=8, seed=1):
    """A 'pre-trained' ResNet-18 (random weights and BatchNorm statistics, seeded) saved as safetensors."""
    torch.manual_seed(seed)
    model = ImageNetResNet(18, num_classes=num_classes, width=width)
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                value.copy_(0.1 * torch.randn_like(value) + (1.0 if name.endswith("running_var") else 0.0))
    state = {name: value.contiguous() for name, value in model.state_dict().items()}
    save_file(state, str(path))
    return state


def test_names_shapes_and_the_head_are_checked_in_one_line(tmp_path):
    path = tmp_path / "resnet18.safetensors"
    state = _pretrained(path, num_classes=10)
    with pytest.raises(DataError, match=r"its classifier head fc has 10 outputs, the model's 3; build the model with "
                                        r"num_classes=10 \(data.classes\), or load with head='skip'"):
        load_torchvision_weights(ImageNetResNet(18, num_classes=3, width=8), path)
    fine_tune = load_torchvision_weights(ImageNetResNet(18, num_classes=3, width=8), path, head="skip")
    assert torch.equal(fine_tune.state_dict()["layer4.1.conv2.weight"], state["layer4.1.conv2.weight"])
    assert fine_tune.fc.weight.shape == (3, 64)
    deeper = ImageNetResNet(34, num_classes=10, width=8)
    missing = len(set(deeper.state_dict()) - set(state))
    with pytest.raises(DataError, match=rf"does not match ImageNetResNet: names {missing} missing "
                                        r"\(layer1.2.bn1.bias, "):
        load_torchvision_weights(deeper, path)
    with pytest.raises(DataError, match=r"no such weights file"):
        load_torchvision_weights(ImageNetResNet(18, num_classes=10, width=8), tmp_path / "none.safetensors")


def _find(root, data, weights, *extra):
    return ["find", "--preset", "resnet18_image_folder_tiny", "--data-dir", str(data), "--root", str(root),
            "--model.weights", str(weights), "--steps", "3it", "--train.milestones", "2it", "--train.warmup", "0it",
            "--prune.rewind", "0it", "--train.eval_every", "3it", "--levels", "2", "--variants",
            "iterative_reset,iterative_reinit", "--data.validation_size", "3", "--data.loader_workers", "0",
            "--train.batch_size", "4", "--quiet", "--no-report", *extra]


def test_pretrained_mlp_is_theta0_through_the_api(tmp_path, tiny_data):
    """The cheap path of the slow test below: an MLP saved as safetensors is θ0 of every trial; tickets reset to it,
    the reinitialization control does not."""
    from ticketlab.api import find_tickets
    from ticketlab.models import build_model
    from ticketlab.presets import preset

    torch.manual_seed(3)
    source = build_model("mlp", (24,), 10, hidden=(32,))
    pretrained = {name: value.detach().clone().contiguous() for name, value in source.state_dict().items()}
    save_file(pretrained, str(tmp_path / "mlp.safetensors"))
    config = preset("mnist1d").replace(trials=1, variants=["iterative_reset", "iterative_reinit"], **{
        "model.name": "mlp", "model.hidden": [32], "model.weights": str(tmp_path / "mlp.safetensors"),
        "train.steps": "6it", "train.eval_every": "3it", "train.batch_size": 50, "prune.levels": 2,
        "prune.rewind": "0it"})
    result = find_tickets(config, data=tiny_data, root=tmp_path / "runs", progress=False, report=False,
                          population=1)
    for trial in ("trial_0",):
        dense = load_tensors(result.run_dir / trial / "level_00" / "dense" / "weights_init.safetensors")
        assert all(torch.equal(dense[name], pretrained[name]) for name in pretrained)
        job = result.run_dir / trial / "level_02"
        mask = load_tensors(job / "iterative_reset" / "mask.safetensors")
        reset = load_tensors(job / "iterative_reset" / "weights_init.safetensors")
        assert all(torch.equal(reset[name], pretrained[name] * mask[name]) for name in mask)
        reinit = load_tensors(job / "iterative_reinit" / "weights_init.safetensors")
        first = next(iter(mask))
        assert not torch.equal(reinit[first], reset[first])


@pytest.mark.slow
def test_find_starts_every_trial_from_the_pretrained_weights(tmp_path, capsys):
    from tests.data.test_image_folder import write_folder

    data = write_folder(tmp_path / "images", train_per_class=4, val_per_class=2)
    weights = tmp_path / "resnet18.safetensors"
    pretrained = _pretrained(weights)
    assert main(_find(tmp_path / "runs", data, weights)) == 0, capsys.readouterr().err
    [run_dir] = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "config.json").read_text())["config"]["model"]["weights"] == str(weights)
    dense = load_tensors(run_dir / "trial_0" / "level_00" / "dense" / "weights_init.safetensors")
    assert set(dense) == set(pretrained) and all(torch.equal(dense[name], pretrained[name]) for name in dense)
    for level in ("level_01", "level_02"):
        job = run_dir / "trial_0" / level
        mask = load_tensors(job / "iterative_reset" / "mask.safetensors")
        reset = load_tensors(job / "iterative_reset" / "weights_init.safetensors")
        assert all(torch.equal(reset[name], pretrained[name] * mask[name]) for name in mask)  # rewind 0it = θ_pre
        final = load_tensors(job / "iterative_reset" / "weights_final.safetensors")
        assert all(torch.all(final[name][~mask[name]] == 0) for name in mask)  # exact masks through training
        reinit = load_tensors(job / "iterative_reinit" / "weights_init.safetensors")
        assert not torch.equal(reinit["layer1.0.conv1.weight"], reset["layer1.0.conv1.weight"])

    # a head of another class count, or no file, is one line before anything trains
    other = tmp_path / "resnet18_10.safetensors"
    _pretrained(other, num_classes=10)
    capsys.readouterr()
    assert main(_find(tmp_path / "bad", data, other)) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "build the model with num_classes=10" in error, error
    assert not list((tmp_path / "bad").glob("*/trial_0/level_00/dense/result.json"))
    assert main(_find(tmp_path / "bad", data, tmp_path / "missing.safetensors")) == 2
    assert "missing.safetensors: no such weights file" in capsys.readouterr().err
    assert main(_find(tmp_path / "bad", data, tmp_path / "weights.pth")) == 2
    assert "model.weights '" in capsys.readouterr().err  # must be a .safetensors file


def test_a_torchvision_resnet_loads_its_own_state_dict_and_ticketlabs(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    network = torchvision.models.resnet18(num_classes=3)
    save_file({name: value.contiguous() for name, value in network.state_dict().items()},
              str(tmp_path / "tv.safetensors"))
    ours = load_torchvision_weights(ImageNetResNet(18, num_classes=3), tmp_path / "tv.safetensors").eval()
    inputs = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours(inputs), network.eval()(inputs), atol=1e-5)
    fresh = load_torchvision_weights(torchvision.models.resnet18(num_classes=3), tmp_path / "tv.safetensors")
    assert all(torch.equal(value, network.state_dict()[name]) for name, value in fresh.state_dict().items())


def test_a_timm_vit_loads_by_name_and_names_its_head(tmp_path):
    timm = pytest.importorskip("timm")
    network = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3, img_size=32, patch_size=8)
    save_file({name: value.contiguous() for name, value in network.state_dict().items()},
              str(tmp_path / "vit.safetensors"))
    fresh = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3, img_size=32, patch_size=8)
    load_torchvision_weights(fresh, tmp_path / "vit.safetensors")
    assert all(torch.equal(value, network.state_dict()[name]) for name, value in fresh.state_dict().items())
    other = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=5, img_size=32, patch_size=8)
    with pytest.raises(DataError, match="classifier head head has 3 outputs, the model's 5; build the model with "
                                        "num_classes=3"):
        load_torchvision_weights(other, tmp_path / "vit.safetensors")


@pytest.mark.parametrize("library", ["torchvision", "timm"])
def test_imp_on_a_torchvision_resnet_or_a_timm_vit_rewinds_to_its_pretrained_weights(library, tmp_path):
    """A torchvision ResNet-18 and a timm ViT, built by their own constructors, through `find_tickets(model=...)`:
    θ0 is the file's weights, the tickets at rewind 0 are θ_pre masked, and pruned weights stay 0."""
    import ticketlab
    from ticketlab.data import make_splits

    module = pytest.importorskip(library)
    if library == "torchvision":
        def build():
            return module.models.resnet18(num_classes=3)
    else:
        def build():
            return module.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3, img_size=32,
                                       patch_size=8)
    torch.manual_seed(1)
    pretrained = build()
    save_file({name: value.contiguous() for name, value in pretrained.state_dict().items()},
              str(tmp_path / "pretrained.safetensors"))
    network = load_torchvision_weights(build(), tmp_path / "pretrained.safetensors")
    generator = torch.Generator().manual_seed(0)
    images, labels = torch.randn(48, 3, 32, 32, generator=generator), torch.randint(0, 3, (48,), generator=generator)
    data = make_splits(images[:40], labels[:40], images[40:], labels[40:], validation_size=8, num_classes=3)
    config = ticketlab.preset("mnist1d").replace(trials=1, variants=["iterative_reset"], **{
        "model.weights": str(tmp_path / "pretrained.safetensors"), "prune.rewind": "0it", "prune.levels": 1,
        "train.steps": "2it", "train.eval_every": "1it", "train.batch_size": 8, "train.lr": 0.01})
    result = ticketlab.find_tickets(config, model=network, data=data, root=tmp_path / "runs", progress=False,
                                    report=False, workers=1)
    ticket = result.run_dir / "trial_0" / "level_01" / "iterative_reset"
    start, mask = load_tensors(ticket / "weights_init.safetensors"), load_tensors(ticket / "mask.safetensors")
    final = load_tensors(ticket / "weights_final.safetensors")
    reference = pretrained.state_dict()
    assert mask and all(torch.equal(start[name], reference[name] * mask[name].to(reference[name].dtype))
                        for name in mask)
    assert all(torch.equal(start[name], reference[name]) for name in reference if name not in mask)
    assert all(torch.all(final[name][~keep.bool()] == 0) for name, keep in mask.items())
