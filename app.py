"""The web app: the Gradio authoring UI mounted in FastAPI, next to the public share pages.

    python app.py [--host 127.0.0.1] [--port 7860] [--auth user:pass,...] [--model ID|PATH]

Routes: /            the authoring UI (Gradio)
        /a/{token}   a shared article (read-only, no script), /a/{token}.md its Markdown
        /media/{id}  library images shown in the editor (private ones to their owner only)
        /healthz     liveness
"""

from __future__ import annotations

import argparse
import os
import secrets
from pathlib import Path

import gradio as gr
from fastapi import FastAPI

from composer.config import Settings
from composer.services import Services
from ui.i18n import I18N
from ui.identity import Identities, OwnerCookie
from ui.layout import CSS, build_ui
from ui.progress_line import CLOCK_JS
from ui.media import LibraryFileGuard, build_media_router
from ui.share import build_share_router
from ui.web_security import SecurityHeaders, app_headers


def browser_secret(settings: Settings) -> str:
    """The key that signs browsers' owner cookies (ui/identity.py); kept in the data dir
    across restarts, readable by the server only, never sent to a browser. Replicas that
    start together on one data dir agree on it: the first one to create the file wins."""
    path = settings.home / "browser-secret"
    if not path.exists():
        settings.ensure_dirs()
        draft = path.with_name(f".browser-secret.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(32))
        try:
            os.link(draft, path)  # atomic, and refuses to replace another replica's key
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()


def create_app(services: Services) -> FastAPI:
    """The FastAPI app with share routes, media, health and the Gradio UI at /."""
    settings = services.settings
    services.documents  # open and migrate the database before the first request
    identities = Identities(browser_secret(settings), on_spaces=settings.on_spaces)
    app = FastAPI(title="Interleaved Composer", docs_url=None, redoc_url=None)
    # The last added runs first: headers on every response, then the owner cookie, then
    # the check of Gradio's file route for private library images.
    app.add_middleware(LibraryFileGuard, services=services, identities=identities)
    app.add_middleware(OwnerCookie, identities=identities)
    app.add_middleware(SecurityHeaders, headers=app_headers(settings.on_spaces))
    app.include_router(build_share_router(services))
    app.include_router(build_media_router(services, identities))

    @app.get("/healthz")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    if settings.captioner:  # caption what has no caption yet, in the background
        services.captions.start()
    demo = build_ui(services, identities, settings.model_concurrency,
                    hf_login=settings.on_spaces)
    demo.queue(default_concurrency_limit=8)
    auth = settings.auth_pairs() or None
    return gr.mount_gradio_app(app, demo, path="/", i18n=I18N, css=CSS, js=CLOCK_JS, auth=auth,
                               allowed_paths=[str(settings.images_dir), str(settings.thumbs_dir)],
                               footer_links=["api"],
                               show_error=True)


def main() -> None:
    """Parse flags, build the app and serve it with uvicorn."""
    parser = argparse.ArgumentParser(description="Interleaved Composer web app")
    parser.add_argument("--host", help="default 127.0.0.1 (0.0.0.0 on a Space)")
    parser.add_argument("--port", type=int, help="default 7860")
    parser.add_argument("--auth", help="user:password[,user:password] turns on login")
    parser.add_argument("--model", help="'embedded', a model id or path, or module:factory")
    parser.add_argument("--home", type=Path, help="data directory")
    parser.add_argument("--database-url", help="SQLAlchemy URL")
    args = parser.parse_args()
    settings = Settings.from_env(host=args.host, port=args.port, auth=args.auth,
                                 model=args.model, home=args.home,
                                 database_url=args.database_url)
    services = Services(settings)
    import sys

    from composer.types import ComposerError
    from storage.faults import file_error, require_writable_dir

    try:  # a read-only data directory, a full disk, an unreachable server: one line, exit 1
        services.db.require_writable()
        require_writable_dir(settings.home)
        app = create_app(services)
    except ComposerError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    except OSError as error:
        print(f"error: {file_error(error.filename or settings.home, error)}", file=sys.stderr)
        raise SystemExit(1) from None
    import uvicorn

    print(f"Interleaved Composer on http://{settings.host}:{settings.port}  "
          f"(data: {settings.home})", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")


if __name__ == "__main__":
    main()
