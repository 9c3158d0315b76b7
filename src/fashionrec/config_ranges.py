"""The README's table of every numeric config key and its range, from the configs' own fields.

Above both config modules (the stages' and the metric stage's), so neither imports the other for it;
``scripts/config_ranges.py --write`` puts the table in README.md and tests/test_config.py keeps it in step.
"""

from __future__ import annotations

from .config import IndexConfig, StageConfig, numeric_keys
from .metric_learning.config import MetricConfig


def config_kinds() -> list[tuple[str, type]]:
    """The config files the toolkit reads: (the commands reading it, its dataclass)."""
    return [("pretrain, finetune", StageConfig), ("metric", MetricConfig), ("index", IndexConfig)]


def ranges_table() -> str:
    """The README's table of every numeric config key and its allowed values (a key several files share with
    the same range is one row)."""
    rows: dict[tuple, list[str]] = {}
    for kind, cls in config_kinds():
        for key, kind_of_number, allowed in numeric_keys(cls):
            rows.setdefault((key, kind_of_number, str(allowed)), []).append(kind)
    lines = ["| key | config | type | allowed |", "|---|---|---|---|"]
    lines += [f"| `{key.partition(' ')[0]}`{' ' * bool(key.partition(' ')[2])}{key.partition(' ')[2]} | "
              f"{', '.join(kinds)} | {type_} | {allowed} |" for (key, type_, allowed), kinds in sorted(rows.items())]
    return "\n".join(lines) + "\n"
