"""The torch engine: AlexNet and BN-Inception written here (no torchvision).

One file per architecture (each registers its builder with ``@register_model``), ``engine.py``
(the Classifier) and ``weights.py``; nothing is imported here, so each file is imported only
when it is used (see :mod:`fashionrec.engines.registry`).
"""
