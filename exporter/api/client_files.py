"""GET /client/metrics-service.js and .d.ts: the browser client, as kept in clients/js."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from exporter.api.replies import error_reply

CLIENT_FILES = {
    "metrics-service.js": "text/javascript; charset=utf-8",
    "metrics-service.d.ts": "text/plain; charset=utf-8",
}
_PACKAGE = Path(__file__).resolve().parent.parent
SOURCE_DIR = _PACKAGE.parent / "clients" / "js"
"""Where the client is written and packed for npm (a source checkout, an editable install)."""
PACKAGED_DIR = _PACKAGE / "web" / "client"
"""Where a built wheel carries a copy of it (setup.py's build step puts it there)."""


def client_dir() -> Path | None:
    """The folder holding the client: the source tree when there is one, else the package."""
    for folder in (SOURCE_DIR, PACKAGED_DIR):
        if all((folder / name).is_file() for name in CLIENT_FILES):
            return folder
    return None


async def handle_client_file(request: web.Request) -> web.StreamResponse:
    """One of the client's files, revalidated on each load (ETag) so an upgrade shows at once."""
    name = request.match_info["name"]
    folder = client_dir()
    if name not in CLIENT_FILES or folder is None:
        return error_reply(404, "not_found", f"no client file {name!r} here")
    return web.FileResponse(
        folder / name,
        headers={"Content-Type": CLIENT_FILES[name], "Cache-Control": "no-cache"},
    )


def setup_client_files(app: web.Application) -> None:
    app.router.add_get("/client/{name}", handle_client_file)
