"""The engines (torch, mxnet) behind one :class:`~fashionrec.engines.base.Classifier` interface.

``registry`` names the engines and architectures (cheap to import), ``factory`` builds a
classifier, ``base`` is the interface, ``convert`` moves weights between engines.
"""
