"""Query images into an extractor: decoded and resized exactly as the catalog's loader did it.

:class:`QueryImages` is what every query extractor shares (torch's and mxnet's
:class:`~fashionrec.features.FeatureExtractor`, ONNX Runtime's
:class:`~fashionrec.onnx_runtime.OnnxExtractor`): given ``input_size`` and ``extract_batch`` (uint8
``(N, H, W, 3)`` -> features and probabilities), it takes PIL images or files. No framework is imported.
"""

from __future__ import annotations

import numpy as np

from .data.images import decode_image, resize


class QueryImages:
    input_size: int

    def extract_batch(self, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        raise NotImplementedError

    def preprocess(self, images) -> np.ndarray:
        """PIL images -> a uint8 batch (N, H, W, 3), exactly as the loader makes it."""
        return np.stack([np.asarray(resize(img, self.input_size), dtype=np.uint8) for img in images])

    def extract_images(self, images) -> tuple[np.ndarray, list[np.ndarray]]:
        return self.extract_batch(self.preprocess(images))

    def extract_files(self, paths, max_pixels: int | None = None):
        """Decode files (errors name the file) and extract them in one batch."""
        kw = {} if max_pixels is None else {"max_pixels": max_pixels}
        return self.extract_images([decode_image(p, target_size=self.input_size, **kw) for p in paths])
