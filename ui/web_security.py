"""Protective HTTP headers of the authoring app (the Gradio page, its API and /media).

Share pages (ui/share.py) send their own, stricter headers (no script at all); a response
that already carries a header keeps it, so this only fills in what a route did not set.

What Gradio needs, checked in headless Chromium (tests/test_app_security.py): inline
scripts (its page config is an inline script) and inline styles, `data:` and `blob:` images
and media, web workers from `blob:`, and the theme's Google fonts. Everything else loads
from the app's own origin.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

# Hugging Face shows a Space inside an iframe on huggingface.co (the app itself runs on
# <name>.hf.space), so there the page may be framed by those origins and nobody else.
SPACES_FRAME_ANCESTORS = "'self' https://huggingface.co https://*.hf.space"


def app_csp(on_spaces: bool = False) -> str:
    """The Content-Security-Policy of the authoring UI (see the module docstring)."""
    frame_ancestors = SPACES_FRAME_ANCESTORS if on_spaces else "'none'"
    avatars = " https://huggingface.co https://*.huggingface.co" if on_spaces else ""
    return "; ".join([
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline' 'unsafe-eval'",  # gr.HTML compiles templates
        "style-src 'self' 'unsafe-inline' https://fonts.googleapis.com",
        "font-src 'self' data: https://fonts.gstatic.com",
        f"img-src 'self' data: blob:{avatars}",
        "media-src 'self' data: blob:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "frame-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        f"frame-ancestors {frame_ancestors}",
    ])


def app_headers(on_spaces: bool = False) -> dict[str, str]:
    """The headers every app response gets unless its route set them itself.

    X-Frame-Options is for browsers without CSP frame-ancestors; it cannot name
    huggingface.co, so on a Space only frame-ancestors limits framing.
    """
    headers = {
        "Content-Security-Policy": app_csp(on_spaces),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
    }
    if not on_spaces:
        headers["X-Frame-Options"] = "DENY"
    return headers


Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class SecurityHeaders:
    """ASGI middleware: adds `headers` to every HTTP response that lacks them.

    Plain ASGI rather than BaseHTTPMiddleware, so Gradio's streamed (SSE) responses pass
    through untouched.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], headers: dict[str, str]) -> None:
        self.app = app
        self.headers = [(name.lower().encode("latin-1"), value.encode("latin-1"))
                        for name, value in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                missing = [(name, value) for name, value in self.headers if name not in present]
                if missing:
                    message = {**message, "headers": [*message.get("headers", []), *missing]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
