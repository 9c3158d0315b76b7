"""The torch engine: AlexNet and BN-Inception written here (no torchvision)."""

from .alexnet import AlexNet, alexnet
from .bninception import BNInception, bninception

__all__ = ["AlexNet", "alexnet", "BNInception", "bninception"]
