"""AlexNet (Krizhevsky et al. 2012) laid out as torchvision's, with a timm-style head split.

``forward_features`` -> conv feature map; ``forward_head(x, pre_logits=True)`` -> the 4096-d
penultimate feature (the output of the second fully connected layer and its ReLU), which is
what the recommender uses once the softmax head is stripped. Adaptive pooling to 6x6 lets it
run at inputs other than 224 px.
"""

from __future__ import annotations

import torch
from torch import nn

from ..arch_tables import check_builder_args
from ..registry import register_model


class AlexNet(nn.Module):
    def __init__(self, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        check_builder_args(num_classes, dropout)
        self.num_classes = num_classes
        self.num_features = 4096
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.pre_logits = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(p=dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
        )
        self.fc = nn.Linear(4096, num_classes)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes).to(self.fc.weight.device)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pre_logits(torch.flatten(self.avgpool(x), 1))
        return x if pre_logits else self.fc(x)

    def pooled_features(self, x: torch.Tensor) -> torch.Tensor:
        """The recommender's feature: the network with its softmax head stripped."""
        return self.forward_head(self.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model("alexnet")
def alexnet(num_classes: int = 1000, dropout: float = 0.5) -> AlexNet:
    return AlexNet(num_classes=num_classes, dropout=dropout)
