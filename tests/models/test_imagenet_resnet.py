"""ImageNet ResNets in torchvision's layout: parameter counts, names and shapes, checkpoint loading."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from ticketlab.errors import ConfigError, DataError
from ticketlab.models import ImageNetResNet, build_model, load_torchvision_weights
from ticketlab.pruning import prunable_weights

# torchvision's published parameter counts (torchvision.models docs: resnet18 11.7M, resnet50 25.6M)
PARAMETERS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032}


@pytest.mark.parametrize("depth", sorted(PARAMETERS))
def test_parameter_counts_match_torchvision(depth):
    model = ImageNetResNet(depth)
    assert sum(p.numel() for p in model.parameters()) == PARAMETERS[depth]


def expected_layout(depth: int) -> dict[str, tuple[int, ...]]:
    """torchvision's state_dict names and shapes, written out from the architecture (no torchvision needed)."""
    bottleneck = depth >= 50
    stages = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}[depth]
    shapes = {"conv1.weight": (64, 3, 7, 7)}

    def bn(prefix, channels):
        shapes.update({f"{prefix}.weight": (channels,), f"{prefix}.bias": (channels,),
                       f"{prefix}.running_mean": (channels,), f"{prefix}.running_var": (channels,),
                       f"{prefix}.num_batches_tracked": ()})

    bn("bn1", 64)
    channels = 64
    for stage, blocks in enumerate(stages):
        width = 64 * 2**stage
        out = width * (4 if bottleneck else 1)
        for index in range(blocks):
            prefix = f"layer{stage + 1}.{index}"
            if bottleneck:
                shapes[f"{prefix}.conv1.weight"] = (width, channels, 1, 1)
                shapes[f"{prefix}.conv2.weight"] = (width, width, 3, 3)
                shapes[f"{prefix}.conv3.weight"] = (out, width, 1, 1)
                bn(f"{prefix}.bn1", width), bn(f"{prefix}.bn2", width), bn(f"{prefix}.bn3", out)
            else:
                shapes[f"{prefix}.conv1.weight"] = (width, channels, 3, 3)
                shapes[f"{prefix}.conv2.weight"] = (width, width, 3, 3)
                bn(f"{prefix}.bn1", width), bn(f"{prefix}.bn2", width)
            if index == 0 and (stage > 0 or channels != out):
                shapes[f"{prefix}.downsample.0.weight"] = (out, channels, 1, 1)
                bn(f"{prefix}.downsample.1", out)
            channels = out
    shapes.update({"fc.weight": (1000, channels), "fc.bias": (1000,)})
    return shapes


@pytest.mark.parametrize("depth", [18, 50])
def test_state_dict_layout_is_torchvisions(depth):
    state = ImageNetResNet(depth).state_dict()
    assert {name: tuple(value.shape) for name, value in state.items()} == expected_layout(depth)


def test_strides_and_output_shape():
    model = ImageNetResNet(50, num_classes=7, width=8).eval()
    assert model.layer2[0].conv2.stride == (2, 2) and model.layer2[0].conv1.stride == (1, 1)  # v1.5
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 7)


def test_load_checkpoints_by_name(tmp_path):
    source = ImageNetResNet(18, num_classes=10, width=8)
    with torch.no_grad():
        for parameter in source.parameters():
            parameter.normal_()
    state = {name: value.contiguous() for name, value in source.state_dict().items()}
    save_file(state, str(tmp_path / "weights.safetensors"))
    target = load_torchvision_weights(ImageNetResNet(18, num_classes=10, width=8), tmp_path / "weights.safetensors")
    for key, value in state.items():
        assert torch.equal(target.state_dict()[key], value), key
    with pytest.raises(DataError, match="does not match ImageNetResNet"):
        load_torchvision_weights(ImageNetResNet(18, num_classes=5, width=8), tmp_path / "weights.safetensors")
    torch.save(state, tmp_path / "weights.pth")
    with pytest.raises(DataError, match="never unpickles"):  # a pickle is refused, with the conversion command
        load_torchvision_weights(ImageNetResNet(18, num_classes=10, width=8), tmp_path / "weights.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(DataError, match="is not a readable state_dict"):
        load_torchvision_weights(ImageNetResNet(18), tmp_path / "junk.safetensors")


def test_registry_and_prunable_layers():
    model = build_model("resnet50", (3, 32, 32), 10, width=16)
    assert isinstance(model, ImageNetResNet)
    names = set(prunable_weights(model))
    assert "conv1.weight" in names and "fc.weight" in names and "layer1.0.downsample.0.weight" in names
    assert not any(".bn" in name or "downsample.1" in name for name in names)
    with pytest.raises(ConfigError, match="model.depth does not apply to resnet18"):
        build_model("resnet18", (3, 32, 32), 10, depth=20)
