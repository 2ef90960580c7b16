"""Library images for the authoring UI, served only to those who may see them.

Two ways lead to a library file: `/media/{id}` (the article view's <img> tags) and Gradio's
file route `/gradio_api/file=...` (galleries and the image preview: Gradio serves the
thumbnail from the library folder or from the copy it keeps in its cache; either file is
named after the image id, `<id>.<ext>` or `<id>-<size>.jpg`). A shared library image is for
everyone; a private one only for its owner (the browser's cookie, or the account that
browser is signed in to: ui/identity.py). Anyone else gets the same 404 as for an image that
does not exist, so nobody learns what others hold. Share pages serve the images of a shared
document under their own token (ui/share.py).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as StarletteRequest

from composer.types import LibraryImage, NotFoundError
from ui.identity import Identities
from ui.share import SECURITY_HEADERS

IMAGE_ID = re.compile(r"^[0-9a-f]{64}$")
# A library file or thumbnail, as Gradio names it in its file route.
LIBRARY_FILE = re.compile(r"^([0-9a-fA-F]{64})(?:-\d+)?\.[A-Za-z0-9]+$")
FILE_ROUTE = "/gradio_api/file="


def visible_image(services: Any, identities: Identities, image_id: str,
                  request: Any) -> LibraryImage | None:
    """The library image if the request may see it (shared, or private to one of its
    owners); None otherwise, whether it exists or not."""
    try:
        image = services.images.get(image_id)
    except NotFoundError:
        return None
    if image.owner is None or image.owner in identities.owners(request):
        return image
    return None


def _not_found() -> JSONResponse:
    return JSONResponse({"error": "unknown image"}, status_code=404, headers=SECURITY_HEADERS)


def build_media_router(services: Any, identities: Identities) -> APIRouter:
    """The /media/{id} route of the editor's article view."""
    router = APIRouter()

    @router.get("/media/{image_id}")
    def media(image_id: str, request: Request) -> Response:
        if not IMAGE_ID.match(image_id):
            return _not_found()
        image = visible_image(services, identities, image_id, request)
        if image is None:
            return _not_found()
        private = "private" if image.owner else "public"
        return FileResponse(services.images.images_dir / image.path, headers={
            **SECURITY_HEADERS, "Cache-Control": f"{private}, max-age=86400",
            "Vary": "Cookie"})

    return router


class LibraryFileGuard:
    """ASGI middleware: Gradio's file route answers 404 for a library file (or thumbnail)
    of a private image the request may not see; every other request passes unchanged."""

    def __init__(self, app: Any, services: Any, identities: Identities) -> None:
        self.app = app
        self.services = services
        self.identities = identities

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        image_id = _library_file(scope)
        if image_id is not None:
            request = StarletteRequest(scope)
            found = await run_in_threadpool(self._refused, image_id, request)
            if found:
                await _not_found()(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refused(self, image_id: str, request: Any) -> bool:
        try:
            self.services.images.get(image_id)
        except NotFoundError:
            return False  # not a library file: Gradio decides
        return visible_image(self.services, self.identities, image_id, request) is None


def _library_file(scope: dict[str, Any]) -> str | None:
    """The image id a Gradio file request names, or None for other requests."""
    if scope["type"] != "http":
        return None
    path = scope.get("path", "")
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    if not path.startswith(FILE_ROUTE):
        return None
    found = LIBRARY_FILE.match(PurePosixPath(path[len(FILE_ROUTE):]).name)
    return found.group(1).lower() if found else None
