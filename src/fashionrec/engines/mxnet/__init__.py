"""The MXNet (Gluon) engine: AlexNet and BN-Inception, the same networks as the torch engine's."""

from .alexnet import AlexNet, alexnet
from .bninception import BNInception, bninception
from .weights import get_weights, set_weights

__all__ = ["AlexNet", "alexnet", "BNInception", "bninception", "get_weights", "set_weights"]
