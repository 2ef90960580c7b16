"""The outline's JSON: the schema the model decodes under, and reading a reply still streaming.

The schema (title, then exactly N sections of a heading and key points) is plain JSON Schema,
so a local transformers writer (models/constrained.py, xgrammar) and a remote
OpenAI-compatible server (`response_format` json_schema) enforce the same one. Strings
exclude quotes, backslashes, angle brackets and control characters, so no markup or escape
can be decoded at all.
"""

from __future__ import annotations

import json
import re
from typing import Any

_TEXT = '^[^"\\\\<>\\u0000-\\u001f]{{1,{limit}}}$'
_TITLE = re.compile(r'^\s*\{\s*"title"\s*:\s*"((?:[^"\\]|\\.)*)"')
_PENDING_TITLE = re.compile(r'\{\s*"title"\s*:\s*"((?:[^"\\]|\\.)*)"')


def _string(limit: int) -> dict[str, Any]:
    return {"type": "string", "pattern": _TEXT.format(limit=limit)}


def outline_schema(sections: int, points: int, title_chars: int = 100,
                   heading_chars: int = 60, point_chars: int = 100) -> str:
    """The JSON schema (as a string) of an outline of exactly `sections` sections, each with
    1..`points` key points; strings at most the given lengths."""
    section = {
        "type": "object",
        "properties": {
            "title": _string(heading_chars),
            "key_points": {"type": "array", "items": _string(point_chars),
                           "minItems": 1, "maxItems": points},
        },
        "required": ["title", "key_points"],
        "additionalProperties": False,
    }
    schema = {
        "type": "object",
        "properties": {
            "title": _string(title_chars),
            "sections": {"type": "array", "items": section,
                         "minItems": sections, "maxItems": sections},
        },
        "required": ["title", "sections"],
        "additionalProperties": False,
    }
    return json.dumps(schema, ensure_ascii=False)


def partial_outline(text: str) -> tuple[str | None, list[dict[str, Any]]]:
    """The title and the complete section objects in an outline reply cut anywhere.

    Sections are read up to the last one whose closing brace has streamed in, so a streamed
    outline shows each section as soon as it is whole. Text that is not the outline's JSON
    gives (None, []).
    """
    match = _TITLE.match(text)
    title = _loads(f'"{match.group(1)}"') if match else None
    start = text.find("[")
    if start < 0:
        return title, []
    last_end = _last_section_end(text, start)
    if last_end < 0:
        return title, []
    sections = _loads(text[start:last_end + 1] + "]")
    return title, [s for s in sections or [] if isinstance(s, dict)]


def pending_section_title(text: str) -> str | None:
    """The heading of the section still streaming in an outline reply: its "title" string has
    closed but the section object has not (its key points are being written). None when there
    is no such section."""
    start = text.find("[")
    if start < 0:
        return None
    last_end = _last_section_end(text, start)
    match = _PENDING_TITLE.search(text, (last_end if last_end >= 0 else start) + 1)
    return _loads(f'"{match.group(1)}"') if match else None


def _last_section_end(text: str, start: int) -> int:
    """The index of the closing brace of the last complete section after `start` (the
    sections array's "["), or -1."""
    depth, in_string, escaped, last_end = 0, False, False, -1
    for index in range(start, len(text)):
        char = text[index]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
            if depth == 1 and char == "}":
                last_end = index
            if depth == 0:
                break
    return last_end


def _loads(text: str) -> Any:
    try:
        return json.loads(text, strict=False)
    except ValueError:
        return None
