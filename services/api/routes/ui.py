"""The web pages: a supervisor's overview and a checkpoint scanner, plain files, no build step.

The pages are static; they ask for a bearer token and call the JSON API like
any other client. Only the files shipped in ``static/`` are served; every answer
under ``/ui`` carries a policy that lets nothing load from anywhere but this API
(``services/api/headers.py``).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from services.api.errors import ApiError

router = APIRouter(prefix="/ui", tags=["ui"], include_in_schema=False)

STATIC = Path(__file__).resolve().parent.parent / "static"
PAGES = {"supervisor": "supervisor.html", "scanner": "scanner.html"}
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


def _file(name: str) -> FileResponse:
    path = STATIC / name
    media_type = MEDIA_TYPES.get(path.suffix)
    # Names come from a fixed folder listing, never from a path the client builds.
    if media_type is None or path.parent != STATIC or not path.is_file():
        raise ApiError(404, "not_found", "no such page")
    return FileResponse(path, media_type=media_type)


@router.get("")
async def index() -> RedirectResponse:
    """The supervisor page is the default."""
    return RedirectResponse("/ui/supervisor")


@router.get("/{page}")
async def page(page: str) -> FileResponse:
    """``/ui/supervisor`` or ``/ui/scanner``."""
    if page not in PAGES:
        raise ApiError(404, "not_found", "no such page")
    return _file(PAGES[page])


@router.get("/static/{name}")
async def static_file(name: str) -> FileResponse:
    """The pages' scripts and styles."""
    if name not in {path.name for path in STATIC.iterdir()}:
        raise ApiError(404, "not_found", "no such file")
    return _file(name)
