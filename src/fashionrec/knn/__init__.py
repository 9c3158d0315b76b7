"""k-nearest-neighbour search over catalog feature vectors (Euclidean distance).

One small scikit-learn-style object, :class:`KNNIndex` (``knn_index.py``), in front of six
backends, one module each:

============  =========  ==================================================================
backend       exact      structure
============  =========  ==================================================================
balltree      yes        ``sklearn.neighbors.BallTree`` (the paper's choice)
brute         yes        numpy: one float32 matrix product against the stored vectors
faiss-flat    yes        ``faiss.IndexFlatL2``
faiss-hnsw    no         ``faiss.IndexHNSWFlat`` (graph; slow to build at 2048-d)
faiss-ivf     no         ``faiss.IndexIVFFlat`` (k-means cells; ``nprobe`` of ``nlist`` scanned)
faiss-ivfpq   no         ``faiss.IndexIVFPQ`` (cells + 64-byte codes; the vectors stay on disk)
auto                     ``brute`` up to ``AUTO_EXACT_MAX_BYTES`` (1 GiB) of vectors, else ``faiss-ivf``
============  =========  ==================================================================

``faiss-ivfpq`` is the one for a catalog past memory: it holds 82 bytes per item (measured at
1M x 2048) and reads the caller's vectors (``features.npy``, memory-mapped) only to re-rank its
candidates exactly.

Results are the same for every backend where they are exact: each backend proposes candidates,
their distances are recomputed directly (float64 accumulation of ``x - q``, no ``|x|^2 - 2 x.q``
cancellation, so a query finds itself at distance 0), and each row is sorted by (distance, id):
ties go to the lower id. The exact backends also make sure no item left outside the k returned
is as close as the k-th, so duplicates at the boundary resolve to the lowest ids as well.

``query(Q, k, allowed=mask)`` returns only the items a boolean mask allows, on every backend, with
as many results as there are matching items: :mod:`fashionrec.knn.filtered` holds the rule.

Nothing is pickled: :meth:`KNNIndex.save` writes the vectors as ``.npy`` (exact backends, whose
structures are rebuilt at load) or faiss's own binary format (HNSW / IVF / IVF-PQ, so loading does
not retrain), next to a JSON file with the parameters.

Each backend owns its parameters (its ``Params`` dataclass, with their ranges): ``KNNIndex(backend,
**params)`` takes any registered backend's (a parameter of another backend is kept and unused, as saved
indexes record them all), and ``index.yaml`` reaches them as ``backend: {name: faiss-ivfpq, nlist: 1024,
pq_m: 64, nprobe: 16}``, where a key the named backend lacks is an error (:func:`backend_choices`).

A new backend is one module with a ``@register``-ed :class:`~fashionrec.knn.base.Backend`
subclass, imported below (or before it is used). Importing this package imports neither scikit-learn nor faiss: each
backend imports its library when it is first used.
"""

from dataclasses import dataclass

from ..configtypes import Choice
from . import balltree, brute, faiss_flat, faiss_hnsw, faiss_ivf, faiss_ivfpq  # noqa: F401  (each registers its backend)
from .base import TransformedRows, backend_class, backend_names
from .knn_index import AUTO_EXACT_MAX_BYTES, KNN_FORMAT, KNNIndex

BACKENDS = ("auto",) + backend_names()
EXACT_BACKENDS = backend_names(exact_only=True)
# re-rank from vectors they do not hold: an index directory memory-maps features.npy for them
EXTERNAL_VECTOR_BACKENDS = backend_names(external_only=True)



@dataclass
class AutoParams(Choice):
    """``auto`` takes no parameters: it picks ``brute`` or ``faiss-ivf`` at their defaults (name one to set its)."""

    name = "auto"


def backend_choices() -> dict:
    """``auto`` and each registered backend's name -> its parameters' dataclass (``index.yaml``'s ``backend``
    block: ``name`` and that dataclass's keys)."""
    return {"auto": AutoParams} | {name: backend_class(name).Params for name in backend_names()}


__all__ = ["AUTO_EXACT_MAX_BYTES", "BACKENDS", "EXACT_BACKENDS", "EXTERNAL_VECTOR_BACKENDS", "KNN_FORMAT", "KNNIndex",
           "TransformedRows", "backend_choices"]
