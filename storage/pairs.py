"""Preference pairs (composer.types.PreferencePair): people's rewrites of model paragraphs.

Captured by composer/pairs_capture.py, exported as JSONL by `python -m composer pairs
export` and used by `python -m composer train-dpo`. Pairs outlive their documents.
"""

from __future__ import annotations

import builtins
import json
from pathlib import Path

from sqlalchemy import func, select

from composer.types import InputError, PreferencePair
from storage.db import Database
from storage.tables import PreferencePairRow, utcnow

MAX_PAIR_CHARS = 50_000


class PairRepository:
    """Stores and reads preference pairs; each method runs in its own transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, pair: PreferencePair) -> PreferencePair:
        """Store a pair; returns it with `id` and `created_at` filled in."""
        for name in ("rejected", "chosen"):
            text = getattr(pair, name)
            if not text.strip():
                raise InputError(f"the pair's {name} text is empty")
            if len(text) > MAX_PAIR_CHARS:
                raise InputError(f"the pair's {name} text has {len(text)} characters; the "
                                 f"limit is {MAX_PAIR_CHARS}")
        row = PreferencePairRow(
            document_id=pair.document_id, block_id=pair.block_id, owner=pair.owner,
            op=pair.op[:16], kind=pair.kind[:16], rejected_origin=pair.rejected_origin[:16],
            language=pair.language, prompt=list(pair.prompt), rejected=pair.rejected,
            chosen=pair.chosen, created_at=utcnow())
        with self.db.session() as session:
            session.add(row)
            session.flush()
            return _to_pair(row)

    def list(self, limit: int | None = None) -> builtins.list[PreferencePair]:
        """Stored pairs, oldest first (the first `limit` if given)."""
        query = select(PreferencePairRow).order_by(PreferencePairRow.id)
        if limit is not None:
            query = query.limit(limit)
        with self.db.session() as session:
            return [_to_pair(row) for row in session.scalars(query)]

    def count(self) -> int:
        """How many pairs are stored."""
        with self.db.session() as session:
            return session.scalar(select(func.count()).select_from(PreferencePairRow)) or 0

    def export_jsonl(self, path: str | Path) -> int:
        """Write every pair as one JSON line (PreferencePair.to_json); returns how many."""
        pairs = self.list()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as out:
            for pair in pairs:
                out.write(json.dumps(pair.to_json(), ensure_ascii=False) + "\n")
        return len(pairs)


def _to_pair(row: PreferencePairRow) -> PreferencePair:
    return PreferencePair(prompt=list(row.prompt), rejected=row.rejected, chosen=row.chosen,
                          op=row.op, kind=row.kind, rejected_origin=row.rejected_origin,
                          document_id=row.document_id, block_id=row.block_id, owner=row.owner,
                          language=row.language, id=row.id,
                          created_at=row.created_at.isoformat())
