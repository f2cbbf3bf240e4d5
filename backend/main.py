"""The FastAPI application: API under /api/v1, OpenAPI at /docs, the built frontend at /."""
from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.api.router import api_router
from backend.core.config import Settings, get_settings
from backend.core.errors import DomainError
from backend.core.nul_guard import NulGuard
from backend.storage import LocalStorage

log = logging.getLogger(__name__)
ISOLATION_HEADERS = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp"}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(title="Maskloop", version="0.1.0", docs_url="/docs", openapi_url="/api/v1/openapi.json")
    app.state.settings = settings
    app.state.storage = LocalStorage(settings.resolved_storage_root)

    @app.exception_handler(DomainError)
    async def _domain_error(_: Request, exc: DomainError) -> JSONResponse:
        body = {"detail": exc.detail}
        if exc.code:
            body["code"] = exc.code
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            problems.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return JSONResponse({"detail": "; ".join(problems) or "invalid request", "errors": _jsonable(exc.errors())},
                            status_code=422)

    @app.exception_handler(OverflowError)
    @app.exception_handler(DataError)
    async def _out_of_range(request: Request, exc: Exception) -> JSONResponse:
        # e.g. an id beyond 64 bits reaching SQLite, or a value the database column cannot hold.
        log.info("out-of-range value in %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": "a number or value in the request is out of range"}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    app.include_router(api_router, prefix="/api/v1")
    app.add_middleware(NulGuard)

    @app.get("/api/v1/health", tags=["health"])
    def health() -> dict:
        return {"status": "ok"}

    _mount_frontend(app, Path(settings.frontend_dist))
    return app


def _jsonable(errors: list) -> list:
    out = []
    for err in errors:
        item = {k: v for k, v in err.items() if k in ("loc", "msg", "type")}
        item["loc"] = [str(p) for p in item.get("loc", ())]
        out.append(item)
    return out


def _mount_frontend(app: FastAPI, dist: Path) -> None:
    """Serve the built single-page app with the headers threaded WASM needs."""
    index = dist / "index.html"

    @app.api_route("/{path:path}", methods=["GET", "HEAD"], include_in_schema=False)
    def spa(path: str):
        if path.startswith("api/"):
            return JSONResponse({"detail": f"no API route /{path}"}, status_code=404)
        if not index.is_file():
            return JSONResponse({"detail": "the frontend is not built: run `make frontend`"}, status_code=404)
        root = dist.resolve()
        candidate = (dist / path).resolve()
        if path and root in candidate.parents and candidate.is_file():
            return FileResponse(candidate, headers=ISOLATION_HEADERS)
        return FileResponse(index, headers={**ISOLATION_HEADERS, "Cache-Control": "no-cache"})


def app_factory() -> FastAPI:
    """Entry point for `uvicorn --factory backend.main:app_factory`."""
    return create_app()
