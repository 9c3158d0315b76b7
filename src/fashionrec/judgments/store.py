"""The study database: one SQLite file per study, written one transaction per answer.

Why SQLite, and how it is used:

- **WAL journal, synchronous=FULL.** A committed answer is in the write-ahead log on disk before
  :meth:`JudgmentStore.answer` returns, so killing the server (or the machine) loses no committed
  answer; readers never block the writer. Each write is ``BEGIN IMMEDIATE`` ... ``COMMIT``: the write
  lock is taken first, so concurrent judges queue (``busy_timeout``) instead of deadlocking.
- **One connection per thread** (and per process): the web server's worker threads each get their
  own; :meth:`JudgmentStore.close` closes them all.
- **Nothing stored is lost.** Rows are only ever inserted; triggers refuse any UPDATE or DELETE of
  shown pairs, answers, marks, impressions and clicks. A refused answer (never shown, shown to
  another judge, answered already, a bad choice) is a :class:`JudgmentRefused` (a one-line
  :class:`~fashionrec.errors.UserError` with an HTTP status for the page) and changes nothing.
- **Versioned.** The schema is created on first use and its version and the study's name are in
  the ``meta`` table; a file of another schema, another study, or not a study at all is refused
  with one line naming the file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sqlite3
import threading
import weakref
from itertools import combinations
from pathlib import Path

from ..errors import UserError
from .schema import CHOICES, FORMAT, SCHEMA, SCHEMA_VERSION, JudgmentRefused, mark_rows, now, seed_from
from .schema import check_judge as _judge

__all__ = ["SCHEMA_VERSION", "JudgmentRefused", "JudgmentStore", "CHOICES"]


class JudgmentStore:
    """A side-by-side study in one SQLite file. Open with :meth:`open`; safe to share between threads."""

    def __init__(self, path: Path, study: str, synchronous: str = "FULL", timeout: float = 30.0):
        self.path, self.study, self._sync, self._timeout = path, study, synchronous, timeout
        self._local = threading.local()
        self._all: dict[int, tuple[weakref.ref, sqlite3.Connection]] = {}  # id -> (its thread, connection)
        self._all_lock = threading.Lock()
        self._write_lock = threading.Lock()

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path, study: str | None = None, create: bool = True, *, synchronous: str = "FULL",
             timeout: float = 30.0) -> JudgmentStore:
        """Open (and with ``create``, make on first use) the study database at ``path``.

        ``study`` names the study; an existing file of another study, another schema version or not
        a study database is a one-line UserError naming the file. ``study=None`` opens whatever study
        the file holds (for analysis) or, when creating, names it after the file."""
        path = Path(path)
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise UserError(f"synchronous={synchronous!r}: expected FULL, EXTRA or NORMAL")
        if path.is_dir():
            raise UserError(f"{path}: is a folder, not a judgments database")
        if not path.exists():
            if not create:
                raise UserError(f"{path}: no such judgments database")
            path.parent.mkdir(parents=True, exist_ok=True)
        store = cls(path, study or path.stem, synchronous, timeout)
        try:
            store._init_schema(study, create)
        except BaseException:
            store.close()
            raise
        return store

    def _connect(self) -> sqlite3.Connection:
        try:
            con = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise UserError(f"{self.path}: cannot open the judgments database ({e})") from None
        with self._all_lock:  # a server's worker threads come and go: close the connections of ended ones
            for key, (ref, old) in list(self._all.items()):
                thread = ref()
                if thread is None or not thread.is_alive():
                    with contextlib.suppress(sqlite3.Error):
                        old.close()
                    del self._all[key]
            self._all[id(con)] = (weakref.ref(threading.current_thread()), con)
        try:
            con.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
            con.execute("PRAGMA foreign_keys = ON")
            mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise UserError(f"{self.path}: cannot use a write-ahead log here (journal mode {mode}); "
                                f"put the study on a local disk")
            con.execute(f"PRAGMA synchronous = {self._sync}")
        except sqlite3.OperationalError as e:
            raise self._sqlite_refusal(e) from None
        except sqlite3.DatabaseError as e:
            raise UserError(f"{self.path}: not a judgments database ({e})") from None
        return con

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None or self._local.pid != os.getpid():  # a forked child needs its own
            con = self._connect()
            self._local.con, self._local.pid = con, os.getpid()
        return con

    def close(self) -> None:
        """Close every connection this store opened (all threads)."""
        with self._all_lock:
            cons, self._all = [c for _, c in self._all.values()], {}
        for con in cons:
            with contextlib.suppress(sqlite3.Error):
                con.close()
        self._local = threading.local()

    def __enter__(self) -> JudgmentStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def _write(self):
        """One write transaction: the write lock first (``BEGIN IMMEDIATE``), all or nothing.

        This process's threads queue on a Python lock (woken at once), other processes on SQLite's
        ``busy_timeout`` (which polls): many judges of one server then wait in line, not in naps."""
        con = self._con()
        if not self._write_lock.acquire(timeout=self._timeout):
            raise JudgmentRefused(f"{self.path}: the study database is busy; try again", 503)
        try:
            try:
                con.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                raise self._sqlite_refusal(e) from None
            try:
                yield con
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    con.execute("ROLLBACK")
                raise
            try:
                con.execute("COMMIT")
            except sqlite3.Error as e:
                with contextlib.suppress(sqlite3.Error):
                    con.execute("ROLLBACK")
                raise self._sqlite_refusal(e) from None
        finally:
            self._write_lock.release()

    def _sqlite_refusal(self, e: sqlite3.Error) -> UserError:
        text = str(e)
        if "locked" in text or "busy" in text:
            return JudgmentRefused(f"{self.path}: the study database is busy; try again", 503)
        return UserError(f"{self.path}: cannot be written ({text}); nothing was changed")

    def _init_schema(self, study: str | None, create: bool) -> None:
        con = self._con()
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "meta" not in tables:
            if tables:
                raise UserError(f"{self.path}: a SQLite database, but not a fashionrec judgments study "
                                f"(holds {', '.join(sorted(tables)[:3])}); choose another file")
            if not create:
                raise UserError(f"{self.path}: an empty database, not a judgments study")
            with self._write() as w:
                if not w.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone():  # another opener won
                    for stmt in SCHEMA.split(";\n"):
                        if stmt.strip():
                            w.execute(stmt)
                    created = now()
                    w.executemany("INSERT INTO meta VALUES (?, ?)", [
                        ("format", FORMAT), ("schema", str(SCHEMA_VERSION)), ("study", self.study),
                        ("created", created)])
                    w.execute("INSERT INTO study VALUES (1, ?, ?, ?)", (self.study, created, SCHEMA_VERSION))
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("format") != FORMAT:
            raise UserError(f"{self.path}: a SQLite database, but not a fashionrec judgments study")
        if meta.get("schema") != str(SCHEMA_VERSION):
            raise UserError(f"{self.path}: a judgments database of schema version {meta.get('schema')}; this "
                            f"fashionrec reads version {SCHEMA_VERSION}: use the fashionrec that made it")
        if study is not None and meta.get("study") != study:
            raise UserError(f"{self.path}: holds study {meta.get('study')!r}, not {study!r}; choose another file "
                            f"or the study's own name")
        self.study = meta["study"]

    # ------------------------------------------------------------------ systems and queries

    def add_system(self, name: str, index_path, index_sha256: str, options: dict | None = None) -> int:
        """Register a system (an index and its recommend options) and return its id.

        Adding a system the study already has is a no-op when index and options are unchanged (a
        restarted study); a changed index sha256 or changed options is a UserError."""
        if not isinstance(name, str) or not name.strip():
            raise UserError(f"system name {name!r}: expected a non-empty string")
        if not isinstance(index_sha256, str) or len(index_sha256) < 8:
            raise UserError(f"system {name}: index sha256 {index_sha256!r} is not a digest")
        opts = json.dumps(options or {}, sort_keys=True, default=str)
        with self._write() as w:
            row = w.execute("SELECT id, index_sha256, options FROM systems WHERE name = ?", (name,)).fetchone()
            if row is None:
                return w.execute("INSERT INTO systems (name, index_path, index_sha256, options, added) "
                                 "VALUES (?, ?, ?, ?, ?)", (name, str(index_path), index_sha256, opts, now())).lastrowid
        if row[1] != index_sha256:
            raise UserError(self._changed(name, row[1], index_sha256))
        if row[2] != opts:
            raise UserError(f"{self.path}: system {name!r} was judged with options {row[2]}, now {opts}; "
                            f"start a new study (another file) to judge the changed system")
        return row[0]

    def _changed(self, name: str, was: str, now: str) -> str:
        return (f"{self.path}: the index of system {name!r} changed since the study began (sha256 {was[:12]}, now "
                f"{now[:12]}); its judgments would mix two systems: start a new study or restore the index")

    def check_systems(self, current_sha256_by_name: dict[str, str]) -> None:
        """Refuse (UserError) a system whose index sha256 differs from the one the study began with,
        or a name the study does not have."""
        stored = {s["name"]: s["index_sha256"] for s in self.systems()}
        for name, sha in current_sha256_by_name.items():
            if name not in stored:
                raise UserError(f"{self.path}: study {self.study!r} has no system {name!r} (has "
                                f"{', '.join(sorted(stored)) or 'none'})")
            if stored[name] != sha:
                raise UserError(self._changed(name, stored[name], sha))

    def add_queries(self, images, items=None) -> list[int]:
        """Register query images (paths or ids; ``items`` optional catalog ids beside them); already
        registered ones keep their id. Returns the ids in order."""
        images = [str(i) for i in images]
        items = list(items) if items is not None else [None] * len(images)
        if len(items) != len(images):
            raise UserError(f"add_queries: {len(images)} images but {len(items)} items")
        ids, added = [], now()
        with self._write() as w:
            for image, item in zip(images, items):
                w.execute("INSERT OR IGNORE INTO queries (image, item, added) VALUES (?, ?, ?)",
                          (image, None if item is None else str(item), added))
                ids.append(w.execute("SELECT id FROM queries WHERE image = ?", (image,)).fetchone()[0])
        return ids

    # ------------------------------------------------------------------ judging

    def next_pair(self, judge_id: str, rng=None, *, limit: int | None = None, systems=None,
                  overlap: float = 0.1) -> dict | None:
        """The pair to show ``judge_id`` next, recorded as shown; None when the judge is done.

        A pair shown but not yet answered is returned again (a reloaded page or a restarted server
        continues where the judge was). Otherwise a (query, two systems) combination this judge has
        not seen is drawn: with probability ``overlap`` one another judge already answered (so that
        agreement between judges can be measured), else one of the least shown; left and right are
        in random order. The draw uses a seed taken from ``rng`` (numpy Generator, random.Random,
        an int, or None for the OS's randomness) and the seed is stored with the pair. ``limit``:
        pairs per judge; ``systems``: the names to draw from (all of the study's by default)."""
        judge = _judge(judge_id)
        seed = seed_from(rng)
        with self._write() as w:
            pending = w.execute("SELECT p.id FROM pairs p LEFT JOIN answers a ON a.pair_id = p.id "
                                "WHERE p.judge = ? AND a.pair_id IS NULL ORDER BY p.id LIMIT 1", (judge,)).fetchone()
            if pending:
                return self._pair(w, pending[0], new=False)
            sys_rows = w.execute("SELECT id, name FROM systems ORDER BY id").fetchall()
            if systems is not None:
                unknown = set(systems) - {n for _, n in sys_rows}
                if unknown:
                    raise UserError(f"{self.path}: study {self.study!r} has no system {sorted(unknown)[0]!r}")
                sys_rows = [r for r in sys_rows if r[1] in set(systems)]
            if len(sys_rows) < 2:
                raise UserError(f"{self.path}: study {self.study!r} needs at least two systems to compare")
            queries = [r[0] for r in w.execute("SELECT id FROM queries ORDER BY id")]
            if not queries:
                raise UserError(f"{self.path}: study {self.study!r} has no queries")
            if limit is not None and w.execute("SELECT COUNT(*) FROM pairs WHERE judge = ?",
                                               (judge,)).fetchone()[0] >= limit:
                return None
            combo = "p.query_id, MIN(p.left_system, p.right_system), MAX(p.left_system, p.right_system)"
            shown = {(q, a, b): n for q, a, b, n in
                     w.execute(f"SELECT {combo}, COUNT(*) FROM pairs p GROUP BY 1, 2, 3")}
            mine = set(w.execute(f"SELECT {combo} FROM pairs p WHERE p.judge = ?", (judge,)).fetchall())
            answered = set(w.execute(f"SELECT DISTINCT {combo} FROM pairs p JOIN answers a ON a.pair_id = p.id "
                                     f"WHERE p.judge != ?", (judge,)).fetchall())
            combos = [(q, a, b) for q in queries for (a, _), (b, _) in combinations(sys_rows, 2)
                      if (q, a, b) not in mine]
            if not combos:
                return None
            draw = random.Random(seed)
            others = [c for c in combos if c in answered]
            if others and draw.random() < overlap:
                pool = others
            else:
                fewest = min(shown.get(c, 0) for c in combos)
                pool = [c for c in combos if shown.get(c, 0) == fewest]
            q, a, b = pool[draw.randrange(len(pool))]
            swapped = draw.random() < 0.5
            left, right = (b, a) if swapped else (a, b)
            pair_id = w.execute("INSERT INTO pairs (query_id, left_system, right_system, seed, swapped, judge, shown) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?)", (q, left, right, seed, int(swapped), judge,
                                                                  now())).lastrowid
            return self._pair(w, pair_id, new=True)

    def _pair(self, con, pair_id: int, new: bool) -> dict:
        row = con.execute(
            "SELECT p.id, q.id, q.image, q.item, ls.name, rs.name, p.seed, p.swapped, p.judge, p.shown "
            "FROM pairs p JOIN queries q ON q.id = p.query_id JOIN systems ls ON ls.id = p.left_system "
            "JOIN systems rs ON rs.id = p.right_system WHERE p.id = ?", (pair_id,)).fetchone()
        return {"pair_id": row[0], "query": {"id": row[1], "image": row[2], "item": row[3]}, "left": row[4],
                "right": row[5], "seed": row[6], "swapped": bool(row[7]), "judge": row[8], "shown": row[9],
                "new": new}

    def pair(self, pair_id: int) -> dict:
        """A shown pair (query, left and right system names, seed, judge); JudgmentRefused 404 if unknown."""
        if not self._con().execute("SELECT 1 FROM pairs WHERE id = ?", (pair_id,)).fetchone():
            raise JudgmentRefused(f"pair {pair_id} was never shown", 404)
        return self._pair(self._con(), pair_id, new=False)

    def answer(self, pair_id: int, judge_id: str, choice: str, seconds: float | None = None,
               marks=None) -> None:
        """Store one judge's answer to one shown pair, with its item marks, in one transaction.

        ``choice``: ``left``, ``right`` or ``same``; ``seconds``: time taken; ``marks``: dicts
        ``{"side": "left"|"right", "item": id, "rank": 1.., "relevant": bool}``. Refused
        (:class:`JudgmentRefused`, nothing stored): a pair never shown, shown to another judge,
        already answered, a bad choice, time or mark."""
        judge = _judge(judge_id)
        if isinstance(pair_id, bool) or not isinstance(pair_id, int):
            raise JudgmentRefused(f"pair id {pair_id!r}: expected an integer", 400)
        if choice not in CHOICES:
            raise JudgmentRefused(f"choice {str(choice)[:20]!r}: expected left, right or same", 400)
        if seconds is not None:
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds) \
                    or seconds < 0:
                raise JudgmentRefused(f"seconds {seconds!r}: expected a non-negative number", 400)
            seconds = float(seconds)
        rows = mark_rows(marks)
        with self._write() as w:
            pair = w.execute("SELECT judge, left_system, right_system FROM pairs WHERE id = ?", (pair_id,)).fetchone()
            if pair is None:
                raise JudgmentRefused(f"pair {pair_id} was never shown; nothing was stored", 404)
            if pair[0] != judge:
                raise JudgmentRefused(f"pair {pair_id} was shown to another judge; nothing was stored", 403)
            if w.execute("SELECT 1 FROM answers WHERE pair_id = ?", (pair_id,)).fetchone():
                raise JudgmentRefused(f"pair {pair_id} is already answered; the first answer is kept", 409)
            w.execute("INSERT INTO answers (pair_id, judge, choice, seconds, answered) VALUES (?, ?, ?, ?, ?)",
                      (pair_id, judge, choice, seconds, now()))
            side = {"left": pair[1], "right": pair[2]}
            w.executemany("INSERT INTO marks (pair_id, system, item, rank, relevant) VALUES (?, ?, ?, ?, ?)",
                          [(pair_id, side[s], item, rank, rel) for s, item, rank, rel in rows])

    def progress(self, judge_id: str, limit: int | None = None) -> dict:
        """``{"answered", "shown", "pending", "total", "remaining", "done"}`` for one judge: ``pending``
        is the id of a shown, unanswered pair (or None); ``total`` is ``limit`` capped by the
        (query, system pair) combinations the study has ("12 of 50")."""
        judge = _judge(judge_id)
        con = self._con()
        shown, answered = con.execute(
            "SELECT COUNT(*), COUNT(a.pair_id) FROM pairs p LEFT JOIN answers a ON a.pair_id = p.id "
            "WHERE p.judge = ?", (judge,)).fetchone()
        pending = con.execute("SELECT p.id FROM pairs p LEFT JOIN answers a ON a.pair_id = p.id WHERE p.judge = ? "
                              "AND a.pair_id IS NULL ORDER BY p.id LIMIT 1", (judge,)).fetchone()
        n_sys = con.execute("SELECT COUNT(*) FROM systems").fetchone()[0]
        combos = con.execute("SELECT COUNT(*) FROM queries").fetchone()[0] * n_sys * (n_sys - 1) // 2
        total = combos if limit is None else min(limit, combos)
        return {"judge": judge, "answered": answered, "shown": shown, "pending": pending[0] if pending else None,
                "total": total, "remaining": max(0, total - answered), "done": answered >= total}

    # ------------------------------------------------------------------ interleaving

    def record_impression(self, query, system_a: str, system_b: str, merged, teams, *, seed=None,
                          judge_id: str | None = None) -> int:
        """Store one interleaved list shown to a user (from :func:`.interleave.team_draft`): the
        query, the two systems, the merged items and each item's team (``a`` or ``b``)."""
        merged, teams = [str(i) for i in merged], list(teams)
        if len(merged) != len(teams) or any(t not in ("a", "b") for t in teams):
            raise JudgmentRefused("teams: expected one 'a' or 'b' per merged item", 400)
        if len(set(merged)) != len(merged):
            raise JudgmentRefused("merged list holds an item twice; team-draft never does", 400)
        judge = None if judge_id is None else _judge(judge_id)
        with self._write() as w:
            ids = []
            for name in (system_a, system_b):
                row = w.execute("SELECT id FROM systems WHERE name = ?", (name,)).fetchone()
                if row is None:
                    raise UserError(f"{self.path}: study {self.study!r} has no system {name!r}")
                ids.append(row[0])
            imp = w.execute("INSERT INTO impressions (query, system_a, system_b, seed, judge, shown) VALUES "
                            "(?, ?, ?, ?, ?, ?)", (str(query), ids[0], ids[1], seed, judge, now())).lastrowid
            w.executemany("INSERT INTO impression_items VALUES (?, ?, ?, ?)",
                          [(imp, r, item, t) for r, (item, t) in enumerate(zip(merged, teams), 1)])
        return imp

    def record_click(self, impression_id: int, item, judge_id: str | None = None) -> int:
        """Store a click on ``item`` of an impression; refused when the impression is unknown (404),
        another judge's (403) or does not hold the item (400)."""
        judge = None if judge_id is None else _judge(judge_id)
        with self._write() as w:
            row = w.execute("SELECT judge FROM impressions WHERE id = ?", (impression_id,)).fetchone()
            if row is None:
                raise JudgmentRefused(f"impression {impression_id} was never shown; nothing was stored", 404)
            if row[0] is not None and judge is not None and row[0] != judge:
                raise JudgmentRefused(f"impression {impression_id} was shown to another user", 403)
            if not w.execute("SELECT 1 FROM impression_items WHERE impression_id = ? AND item = ?",
                             (impression_id, str(item))).fetchone():
                raise JudgmentRefused(f"impression {impression_id} did not show item {str(item)[:40]!r}", 400)
            return w.execute("INSERT INTO clicks (impression_id, item, judge, clicked) VALUES (?, ?, ?, ?)",
                             (impression_id, str(item), judge, now())).lastrowid

    # ------------------------------------------------------------------ readers (plain lists and dicts)

    def _rows(self, sql: str, args=()) -> list[dict]:
        cur = self._con().execute(sql, args)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def info(self) -> dict:
        """The study: name, created, schema, path and counts."""
        con = self._con()
        name, created, schema = con.execute("SELECT name, created, schema FROM study").fetchone()
        count = lambda t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]  # noqa: E731
        return {"name": name, "created": created, "schema": schema, "path": str(self.path),
                **{t: count(t) for t in ("systems", "queries", "pairs", "answers", "marks", "impressions", "clicks")}}

    def systems(self) -> list[dict]:
        rows = self._rows("SELECT id, name, index_path, index_sha256, options, added FROM systems ORDER BY id")
        for r in rows:
            r["options"] = json.loads(r["options"])
        return rows

    def queries(self) -> list[dict]:
        return self._rows("SELECT id, image, item FROM queries ORDER BY id")

    def pairs(self) -> list[dict]:
        """Every shown pair, answered or not (``choice`` None while pending)."""
        return self._rows(
            "SELECT p.id AS pair_id, p.query_id, q.image AS query, ls.name AS left, rs.name AS right, p.seed, "
            "p.swapped, p.judge, p.shown, a.choice, a.seconds, a.answered FROM pairs p "
            "JOIN queries q ON q.id = p.query_id JOIN systems ls ON ls.id = p.left_system "
            "JOIN systems rs ON rs.id = p.right_system LEFT JOIN answers a ON a.pair_id = p.id ORDER BY p.id")

    def answers(self) -> list[dict]:
        """Every answer with its pair: pair_id, query_id, query, left, right, judge, choice, seconds, ..."""
        return [r for r in self.pairs() if r["choice"] is not None]

    def marks(self) -> list[dict]:
        return self._rows(
            "SELECT m.pair_id, p.query_id, a.judge, s.name AS system, m.item, m.rank, m.relevant FROM marks m "
            "JOIN pairs p ON p.id = m.pair_id JOIN answers a ON a.pair_id = m.pair_id "
            "JOIN systems s ON s.id = m.system ORDER BY m.pair_id, m.system, m.rank")

    def impressions(self) -> list[dict]:
        """Every impression: id, query, a, b (system names), seed, judge, shown, items [(item, team)],
        clicks [item, ...] in click order."""
        imps = self._rows("SELECT i.id, i.query, sa.name AS a, sb.name AS b, i.seed, i.judge, i.shown "
                          "FROM impressions i JOIN systems sa ON sa.id = i.system_a "
                          "JOIN systems sb ON sb.id = i.system_b ORDER BY i.id")
        by_id = {i["id"]: {**i, "items": [], "clicks": []} for i in imps}
        for imp, item, team in self._con().execute(
                "SELECT impression_id, item, team FROM impression_items ORDER BY impression_id, rank"):
            by_id[imp]["items"].append((item, team))
        for imp, item in self._con().execute("SELECT impression_id, item FROM clicks ORDER BY id"):
            by_id[imp]["clicks"].append(item)
        return list(by_id.values())
