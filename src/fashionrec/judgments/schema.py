"""The study database's schema (version :data:`SCHEMA_VERSION`) and the checks of what judges send.

Kept apart from :mod:`.store` so the page and the store share one definition of a valid judge id,
choice and mark, and one refusal type (:class:`JudgmentRefused`, with the HTTP status to answer).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

from ..errors import UserError

__all__ = ["SCHEMA_VERSION", "FORMAT", "CHOICES", "SCHEMA", "JudgmentRefused", "now", "check_judge", "seed_from",
           "mark_rows"]

SCHEMA_VERSION = 1
FORMAT = "fashionrec-judgments"
CHOICES = ("left", "right", "same")
_PROTECTED = ("pairs", "answers", "marks", "impressions", "impression_items", "clicks")

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE study (id INTEGER PRIMARY KEY CHECK (id = 1), name TEXT NOT NULL, created TEXT NOT NULL,
                    schema INTEGER NOT NULL);
CREATE TABLE systems (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, index_path TEXT NOT NULL,
                      index_sha256 TEXT NOT NULL, options TEXT NOT NULL, added TEXT NOT NULL);
CREATE TABLE queries (id INTEGER PRIMARY KEY, image TEXT NOT NULL UNIQUE, item TEXT, added TEXT NOT NULL);
CREATE TABLE pairs (id INTEGER PRIMARY KEY, query_id INTEGER NOT NULL REFERENCES queries(id),
                    left_system INTEGER NOT NULL REFERENCES systems(id),
                    right_system INTEGER NOT NULL REFERENCES systems(id),
                    seed INTEGER NOT NULL, swapped INTEGER NOT NULL CHECK (swapped IN (0, 1)),
                    judge TEXT NOT NULL, shown TEXT NOT NULL, CHECK (left_system != right_system));
CREATE INDEX pairs_judge ON pairs(judge);
CREATE TABLE answers (pair_id INTEGER PRIMARY KEY REFERENCES pairs(id), judge TEXT NOT NULL,
                      choice TEXT NOT NULL CHECK (choice IN ('left', 'right', 'same')), seconds REAL,
                      answered TEXT NOT NULL);
CREATE TABLE marks (pair_id INTEGER NOT NULL REFERENCES answers(pair_id),
                    system INTEGER NOT NULL REFERENCES systems(id), item TEXT NOT NULL,
                    rank INTEGER NOT NULL CHECK (rank >= 1), relevant INTEGER NOT NULL CHECK (relevant IN (0, 1)),
                    PRIMARY KEY (pair_id, system, rank));
CREATE TABLE impressions (id INTEGER PRIMARY KEY, query TEXT NOT NULL,
                          system_a INTEGER NOT NULL REFERENCES systems(id),
                          system_b INTEGER NOT NULL REFERENCES systems(id),
                          seed INTEGER, judge TEXT, shown TEXT NOT NULL, CHECK (system_a != system_b));
CREATE TABLE impression_items (impression_id INTEGER NOT NULL REFERENCES impressions(id),
                               rank INTEGER NOT NULL CHECK (rank >= 1), item TEXT NOT NULL,
                               team TEXT NOT NULL CHECK (team IN ('a', 'b')), PRIMARY KEY (impression_id, rank));
CREATE TABLE clicks (id INTEGER PRIMARY KEY, impression_id INTEGER NOT NULL REFERENCES impressions(id),
                     item TEXT NOT NULL, judge TEXT, clicked TEXT NOT NULL);
CREATE INDEX clicks_impression ON clicks(impression_id);
""" + "".join(f"""
CREATE TRIGGER {t}_keep_update BEFORE UPDATE ON {t} BEGIN SELECT RAISE(ABORT, 'stored judgments are kept'); END;
CREATE TRIGGER {t}_keep_delete BEFORE DELETE ON {t} BEGIN SELECT RAISE(ABORT, 'stored judgments are kept'); END;
""" for t in _PROTECTED)


class JudgmentRefused(UserError):
    """An answer, click or request the study refuses; nothing was stored. ``status`` is the HTTP
    status a web page should answer with (400 bad input, 403 another judge's, 404 unknown,
    409 already answered, 503 busy)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def now() -> str:
    """The time, UTC, ISO 8601 to the millisecond (sorts as text)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def check_judge(judge_id) -> str:
    """A judge id is an opaque token (a random cookie): non-empty, printable, at most 128 characters."""
    if not isinstance(judge_id, str) or not judge_id.strip() or len(judge_id) > 128 or not judge_id.isprintable():
        raise JudgmentRefused(f"judge id {str(judge_id)[:40]!r}: expected a non-empty printable string of at most "
                              f"128 characters", 400)
    return judge_id


def seed_from(rng) -> int:
    """A 62-bit seed drawn from ``rng`` (numpy Generator or random.Random), ``rng`` itself when it is
    an int, or the OS's randomness for None."""
    if rng is None:
        return random.SystemRandom().getrandbits(62)
    if isinstance(rng, int) and not isinstance(rng, bool):
        return rng
    if hasattr(rng, "integers"):  # numpy Generator
        return int(rng.integers(0, 2**62))
    return int(rng.getrandbits(62))  # random.Random


def mark_rows(marks) -> list[tuple]:
    """Checked item marks ``[{"side", "item", "rank", "relevant"}]`` as ``(side, item, rank, 0/1)`` rows."""
    rows, seen = [], set()
    for m in marks or ():
        if not isinstance(m, dict):
            raise JudgmentRefused(f"mark {str(m)[:40]!r}: expected an object with side, item, rank, relevant", 400)
        side, item, rank, rel = m.get("side"), m.get("item"), m.get("rank"), m.get("relevant")
        if side not in ("left", "right"):
            raise JudgmentRefused(f"mark side {str(side)[:20]!r}: expected left or right", 400)
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise JudgmentRefused(f"mark rank {str(rank)[:20]!r}: expected an integer from 1", 400)
        if rel not in (True, False, 0, 1) or item is None or isinstance(item, bool):
            raise JudgmentRefused(f"mark of {side} rank {rank}: needs an item and relevant true/false", 400)
        if (side, rank) in seen:
            raise JudgmentRefused(f"mark of {side} rank {rank} given twice", 400)
        seen.add((side, rank))
        rows.append((side, str(item), rank, int(bool(rel))))
    return rows
