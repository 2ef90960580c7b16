"""Public read-only share pages: /a/{token}, /a/{token}.md and the images they show.

Strangers open these pages, so they are plain server-rendered HTML (no Gradio, no script),
carry a Content-Security-Policy that forbids script, escape every piece of text, and are
cached per (token, document version). A cached page is served without asking the database
while it was checked less than COMPOSER_SHARE_FRESH_SECONDS ago and this process has written
nothing since; otherwise one small indexed query checks the version. So a change made here (an
edit, Stop sharing) shows at once, and one made by another replica or a worker within that time.
Unknown and revoked tokens answer a 404 page.
"""

from __future__ import annotations

import html
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, Response

from composer.export import to_markdown
from composer.render import ARTICLE_CSS, article_html, first_paragraph
from composer.types import Document, NotFoundError

SHARE_CSP = ("default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
             "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": SHARE_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
CACHE_ENTRIES = 512

PAGE_CSS = """
body{margin:0;background:#fafaf7}main{padding:2.5rem 1rem 4rem}
footer{max-width:46rem;margin:0 auto;padding:1rem;color:#888;font:.85rem system-ui,sans-serif;
border-top:1px solid #e5e5e0}footer a{color:#888}
"""
NOT_FOUND_HTML = (
    '<!doctype html><html><head><meta charset="utf-8"><title>Not found</title>'
    '<style>body{font:1.1rem system-ui,sans-serif;max-width:36rem;margin:4rem auto;'
    'padding:0 1rem;color:#333}</style></head><body><h1>This article is not shared</h1>'
    "<p>The link is wrong, or its owner stopped sharing it.</p></body></html>"
)


@dataclass(frozen=True)
class _CachedPage:
    version: int
    body: bytes
    checked_at: float  # time.monotonic() of the last version check
    writes: int  # the database's write count before that check


class SharePages:
    """Renders share pages with a small per-token cache validated by the document version."""

    def __init__(self, services: Any):
        self.services = services
        self._cache: OrderedDict[str, _CachedPage] = OrderedDict()
        self._lock = threading.Lock()
        self.fresh_seconds = services.settings.share_fresh_seconds

    def version_of(self, token: str) -> int | None:
        """The shared document's version (one indexed query), None if not shared."""
        return self.services.shares.shared_version(token)

    def page(self, token: str, base_url: str) -> bytes | None:
        """The page's HTML bytes, from the cache when the document has not changed."""
        writes = self.services.db.writes
        with self._lock:
            cached = self._cache.get(token)
        if (cached is not None and cached.writes == writes
                and time.monotonic() - cached.checked_at < self.fresh_seconds):
            return cached.body
        checked_at = time.monotonic()
        version = self.version_of(token)
        if version is None:
            with self._lock:
                self._cache.pop(token, None)
            return None
        if cached is not None and cached.version == version:
            body = cached.body
        else:
            try:
                doc = self.services.shares.get_shared(token)
            except NotFoundError:
                return None
            body = render_page(doc, token, base_url, self.services.images).encode("utf-8")
            version = doc.version
        with self._lock:
            self._cache[token] = _CachedPage(version, body, checked_at, writes)
            self._cache.move_to_end(token)
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return body


def _image_info(store: Any):
    def info(image_id: str):
        try:
            return store.get(image_id)
        except NotFoundError:
            return None
    return info


def render_page(doc: Document, token: str, base_url: str, store: Any) -> str:
    """The standalone share page: article, Open Graph tags, no script anywhere."""
    base = base_url.rstrip("/")
    image_url = lambda image_id: f"{base}/a/{token}/img/{image_id}"  # noqa: E731
    article = article_html(doc, image_url, _image_info(store))
    title = html.escape(doc.title)
    description = html.escape(first_paragraph(doc))
    first_image = next((b.image_id for b in doc.image_blocks if b.image_id), None)
    og_image = (f'<meta property="og:image" content="{html.escape(image_url(first_image))}">'
                '<meta name="twitter:card" content="summary_large_image">') if first_image else ""
    lang = "zh" if doc.language == "zh" else "en"
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><meta name=\"description\" content=\"{description}\">"
        f'<meta property="og:type" content="article"><meta property="og:title" content="{title}">'
        f'<meta property="og:description" content="{description}">'
        f'<meta property="og:url" content="{html.escape(f"{base}/a/{token}")}">{og_image}'
        f"<style>{PAGE_CSS}{ARTICLE_CSS}</style></head><body><main>{article}</main>"
        f'<footer>Shared from Interleaved Composer · <a href="{html.escape(token)}.md">'
        "Markdown</a></footer></body></html>"
    )


def build_share_router(services: Any) -> APIRouter:
    """The FastAPI routes of share pages (mounted by app.py next to the Gradio app)."""
    router = APIRouter()
    pages = SharePages(services)

    def not_found() -> HTMLResponse:
        return HTMLResponse(NOT_FOUND_HTML, status_code=404, headers=SECURITY_HEADERS)

    @router.get("/a/{token}.md")
    def share_markdown(token: str, request: Request) -> Response:
        try:
            doc = services.shares.get_shared(token)
        except NotFoundError:
            return not_found()
        base = str(request.base_url).rstrip("/")
        text = to_markdown(doc, services.images, lambda e: f"{base}/a/{token}/img/{e.image.id}")
        filename = f"article-{doc.id[:8]}.md"
        return PlainTextResponse(text, media_type="text/markdown; charset=utf-8", headers={
            **SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{filename}"'})

    @router.get("/a/{token}/img/{image_id}")
    def share_image(token: str, image_id: str) -> Response:
        try:
            doc = services.shares.get_shared(token)
        except NotFoundError:
            return not_found()
        if image_id not in {b.image_id for b in doc.image_blocks}:
            return not_found()
        return FileResponse(services.images.path(image_id), headers={
            **SECURITY_HEADERS, "Cache-Control": "public, max-age=86400"})

    # async: the cached path is a dict lookup (and at most one indexed query a second), cheaper
    # on the event loop than a hop to the thread pool (the page must stay fast under load).
    @router.get("/a/{token}")
    async def share_page(token: str, request: Request) -> Response:
        body = pages.page(token, str(request.base_url))
        if body is None:
            return not_found()
        return Response(body, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)

    return router
