"""Architecture tables shared by the engines (plain data: no framework imported here)."""

# BN-Inception (Ioffe & Szegedy 2015, Figure 5 / the Caffe model), one row per inception module:
# (1x1, 3x3 reduce, 3x3, double 3x3 reduce, double 3x3, pool type, pool proj); 0 = no branch.
# Stride-2 modules (3c, 4e) have no 1x1 branch and a max-pool pass-through.
BNINCEPTION_MODULES = {
    "3a": (64, 64, 64, 64, 96, "avg", 32),
    "3b": (64, 64, 96, 64, 96, "avg", 64),
    "3c": (0, 128, 160, 64, 96, "max", 0),
    "4a": (224, 64, 96, 96, 128, "avg", 128),
    "4b": (192, 96, 128, 96, 128, "avg", 128),
    "4c": (160, 128, 160, 128, 160, "avg", 128),
    "4d": (96, 128, 192, 160, 192, "avg", 128),
    "4e": (0, 128, 192, 192, 256, "max", 0),
    "5a": (352, 192, 320, 160, 224, "avg", 128),
    "5b": (352, 192, 320, 192, 224, "max", 128),
}

# The published ImageNet checkpoint layouts ``import-weights`` reads (engines/pretrained.py: LAYOUTS), by arch
PUBLISHED_ARCHS = ("bninception", "alexnet", *(f"efficientnet_lite{v}" for v in range(5)))


def check_builder_args(num_classes, dropout) -> None:
    """The builders' shared argument checks (errors name the parameter)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer; got {num_classes!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got {dropout!r}")
