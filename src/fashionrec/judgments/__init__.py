"""Human judgments of rankings: side-by-side studies and team-draft interleaving, stored in SQLite.

- :mod:`.store`: the study database (:class:`JudgmentStore`): systems, queries, each shown pair and
  its randomisation, answers, item marks, interleaved impressions and clicks.
- :mod:`.stats`: Wilson and bootstrap intervals, Bradley-Terry strengths, Cohen's and Fleiss'
  kappa, precision@k and nDCG@k from marks, judgments still needed to separate two systems.
- :mod:`.interleave`: team-draft interleaving and its click credit.
- :mod:`.analysis`: everything above for one study, as a dict, a JSON file and a PNG.
"""

from .store import SCHEMA_VERSION, JudgmentRefused, JudgmentStore

__all__ = ["SCHEMA_VERSION", "JudgmentRefused", "JudgmentStore"]
