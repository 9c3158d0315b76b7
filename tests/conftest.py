import os

import pytest

# Keep the suite within 2 cores and quiet.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """A small synthetic catalog in both layouts, shared by the whole session (read-only)."""
    from fashionrec.data.synth import synthesize

    out = tmp_path_factory.mktemp("synth")
    synthesize(out, n=180, size=64, seed=0, progress=False)
    return out
