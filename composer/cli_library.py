"""Library commands of the command line that need more than a few lines: `library search`.

`library search` ranks the library's images for a description with the composer's own
retriever and prints them with their scores: a table for people, JSON for scripts.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from composer.services import Services
from composer.types import InputError

MAX_SEARCH_RESULTS = 100


def search_results(services: Services, query: str, k: int = 10, source: str | None = None,
                   license: str | None = None) -> list[dict[str, Any]]:
    """The library's best images for a description, best first, as plain records (rank,
    score, id, caption, license, source, attribution), ranked by the composer's own retriever.

    The CLI is the operator: it searches every image a CLI composition could place.
    """
    if not query.strip():
        raise InputError("the search description is empty: describe the picture you want, "
                         "e.g. \"a lighthouse at night\"")
    if not 1 <= k <= MAX_SEARCH_RESULTS:
        raise InputError(f"--k is {k}; it must be between 1 and {MAX_SEARCH_RESULTS}")
    candidates = services.retriever.search(query, k=k, source=source, license=license)
    images = services.images.get_many([candidate.image_id for candidate in candidates])
    return [{"rank": rank, "score": round(candidate.score, 4), "id": candidate.image_id,
             "caption": candidate.caption, "license": candidate.license,
             "source": images[candidate.image_id].source if candidate.image_id in images else "",
             "attribution": candidate.attribution}
            for rank, candidate in enumerate(candidates, start=1)]


def cmd_library_search(services: Services, args: argparse.Namespace) -> int:
    """Print the ranked images for a description: a table, or JSON with --json (scripts)."""
    import json

    results = search_results(services, args.query, args.k, args.source, args.license)
    if args.json:
        print(json.dumps(results, ensure_ascii=False, indent=2))
        return 0
    if not results:
        print("No images match: add some with `library add`, or loosen --source/--license.",
              file=sys.stderr)
        return 0
    print(f"{'#':>3}  {'score':>6}  {'id':<12}  {'license':<14}  {'source':<16}  caption")
    for row in results:
        print(f"{row['rank']:>3}  {row['score']:>6.3f}  {row['id'][:12]:<12}  "
              f"{(row['license'] or '-')[:14]:<14}  {(row['source'] or '-')[:16]:<16}  "
              f"{' '.join(row['caption'].split())[:70] or '(no caption)'}")
    return 0
