"""The MXNet (Gluon) engine: AlexNet and BN-Inception, the same networks as the torch engine's.

mxnet is an optional extra (``pip install fashionrec[mxnet]``). One file per architecture (each
registers its builder with ``@register_model``), ``engine.py`` (the Classifier) and
``weights.py``; nothing is imported here (see :mod:`fashionrec.engines.registry`).
"""
