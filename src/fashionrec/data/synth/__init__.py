"""Synthetic garment catalog: the stand-in for DeepFashion and the Fashion dataset.

Real data is not on these machines, so tests and the demo run on garments drawn here with PIL:
9 categories, each with its own silhouette and details (sleeves, collar and buttons, ribbed
cuffs, flare, two legs, ...), and 5 textures drawn inside the silhouette (graphic, plaid,
plain, spotted, striped), with random colours, scale, position, background and pixel noise.
Patterns are sized relative to the image, so they survive a downscale to 64 px.

:func:`synthesize` writes the images as JPEG files in the three layouts the readers expect:

* ``deepfashion/`` -- the Category and Attribute Prediction benchmark (``img/<Product>/...``,
  ``Anno/*.txt``, ``Eval/list_eval_partition.txt``), with the real category and attribute
  names and the awkward details of the real files (names with spaces, zero-padded labels,
  multi-label textures, images without any texture attribute);
* ``fashion/`` -- ``images/<id>.jpg`` with ``category.csv``, ``texture.csv`` (``path,label``)
  and ``catalog.csv`` (``path,category,texture`` and shop columns: gender, brand, colour, price, in_stock);
* ``inshop/`` -- DeepFashion In-shop Clothes Retrieval (``img/<gender>/<section>/<item>/01_1_front.jpg``,
  ``Eval/list_eval_partition.txt`` with train / query / gallery): 3-5 views of each garment
  (other background, scale, pose, close-up crop), for the metric stage.

Same seed, same bytes: image ``i`` of a tree is drawn from its own generator
``np.random.default_rng([seed, tree, i])``, so the files do not depend on worker scheduling.

The modules, from the bottom up:

* ``textures.py`` -- colours and the 5 fabric patterns;
* ``garments.py`` -- the 9 silhouettes and :func:`draw_garment`;
* ``trees.py`` -- what the writers share: seeds, balanced labels, drawing a tree's JPEGs;
* ``deepfashion.py``, ``fashion.py``, ``inshop.py`` -- one writer per dataset layout (a new layout is one
  more module and one more entry in ``catalog.WRITERS``);
* ``catalog.py`` -- :func:`synthesize`, which runs the writers.
"""

from .catalog import synthesize
from .deepfashion import (
    CATEGORY_ATTRIBUTES,
    DEEPFASHION_ATTRIBUTES,
    DEEPFASHION_CATEGORIES,
    DEEPFASHION_CATEGORY,
    NO_TEXTURE_RATE,
    SECOND_TEXTURE_RATE,
    SPLIT_FRACTIONS,
    TEXTURE_ATTRIBUTE,
    TEXTURE_SYNONYMS,
    ZERO_PADDED_RATE,
)
from .garments import CATEGORIES, draw_garment
from .textures import SUPERSAMPLE, TEXTURES
from .trees import JPEG_QUALITY

__all__ = [
    "CATEGORIES",
    "CATEGORY_ATTRIBUTES",
    "DEEPFASHION_ATTRIBUTES",
    "DEEPFASHION_CATEGORIES",
    "DEEPFASHION_CATEGORY",
    "JPEG_QUALITY",
    "NO_TEXTURE_RATE",
    "SECOND_TEXTURE_RATE",
    "SPLIT_FRACTIONS",
    "SUPERSAMPLE",
    "TEXTURES",
    "TEXTURE_ATTRIBUTE",
    "TEXTURE_SYNONYMS",
    "ZERO_PADDED_RATE",
    "draw_garment",
    "synthesize",
]
