"""The outline and documents tables' values with headers in the browser's language.

A gr.Dataframe's headers are not translated by gr.I18n, so every value sent to one carries
its headers ({"headers", "data"}): the tables read the same in English and Chinese.
"""

from __future__ import annotations

from typing import Any

from ui.i18n import say

# Title, key points, words: the words column stays on screen at 390 px (key points wrap).
OUTLINE_WIDTHS = ["30%", "40%", "14%"]  # with the row numbers, 100% at 390 px
DOCUMENT_WIDTHS = ["46%", "24%", "16%", "14%"]


def outline_value(language: str, rows: list[list[Any]]) -> dict[str, Any]:
    """The outline table's value: title, key points (joined by ';'), words per section."""
    headers = [say(language, key) for key in ("col_title", "col_points", "col_words")]
    return {"headers": headers, "data": [list(row) for row in rows]}


def documents_value(language: str, rows: list[list[Any]]) -> dict[str, Any]:
    """The documents table's value: title, updated, status, words (ids are kept aside)."""
    headers = [say(language, key) for key in ("doc_title", "doc_updated", "doc_status",
                                              "doc_words")]
    return {"headers": headers, "data": [list(row) for row in rows]}
