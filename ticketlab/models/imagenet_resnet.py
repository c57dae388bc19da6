"""ImageNet ResNets (He et al. 2016) in torchvision's module layout, so torchvision checkpoints load by name.

Module and parameter names, shapes and the stride placement (on the 3x3 conv of a bottleneck, "ResNet v1.5") are
torchvision's: conv1/bn1, maxpool, layer1..layer4 of BasicBlock (18, 34) or Bottleneck (50, 101, 152) blocks with
a `downsample` 1x1 conv + BN where the shape changes, global average pooling and `fc`. `width` scales every stage
(64 is the published network; open_lth's imagenet_resnet_D_W). Weights of Conv2d and Linear layers are pruned;
BatchNorm is not. Inputs are [N, 3, H, W]; any H, W >= 32 works (224 for ImageNet).
"""

from __future__ import annotations

import torch
from torch import nn

from ticketlab.errors import ConfigError
from ticketlab.models.pretrained import load_torchvision_weights  # noqa: F401  (its former home)

# depth -> (block kind, blocks per stage), as torchvision's resnet18 ... resnet152
IMAGENET_RESNETS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int, downsample: nn.Module | None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = downsample

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        identity = inputs if self.downsample is None else self.downsample(inputs)
        hidden = self.relu(self.bn1(self.conv1(inputs)))
        return self.relu(self.bn2(self.conv2(hidden)) + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int, downsample: nn.Module | None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, channels * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        identity = inputs if self.downsample is None else self.downsample(inputs)
        hidden = self.relu(self.bn1(self.conv1(inputs)))
        hidden = self.relu(self.bn2(self.conv2(hidden)))
        return self.relu(self.bn3(self.conv3(hidden)) + identity)


class ImageNetResNet(nn.Module):
    """ResNet-18/34/50/101/152 with torchvision's names; `width` channels in layer1 (64 published)."""

    def __init__(self, depth: int = 50, num_classes: int = 1000, width: int = 64, in_channels: int = 3):
        super().__init__()
        if depth not in IMAGENET_RESNETS:
            raise ConfigError(f"ImageNet ResNet depth {depth} must be one of {', '.join(map(str, IMAGENET_RESNETS))}")
        kind, stages = IMAGENET_RESNETS[depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = width
        for stage, blocks in enumerate(stages):
            stage_width = width * 2**stage
            layers = []
            for index in range(blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                downsample = None
                if stride != 1 or channels != stage_width * block.expansion:
                    downsample = nn.Sequential(
                        nn.Conv2d(channels, stage_width * block.expansion, 1, stride=stride, bias=False),
                        nn.BatchNorm2d(stage_width * block.expansion),
                    )
                layers.append(block(channels, stage_width, stride, downsample))
                channels = stage_width * block.expansion
            setattr(self, f"layer{stage + 1}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(channels, num_classes)

    def output_weights(self) -> tuple[nn.Parameter, ...]:
        """The output layer's weight (`prune.output_rate` applies to it)."""
        return (self.fc.weight,)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        hidden = self.maxpool(self.relu(self.bn1(self.conv1(inputs))))
        hidden = self.layer4(self.layer3(self.layer2(self.layer1(hidden))))
        return self.fc(torch.flatten(self.avgpool(hidden), 1))
