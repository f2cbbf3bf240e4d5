"""A tiny static file server for the browser benchmark: serves the built frontend and a fixtures
folder from one origin, with the cross-origin isolation headers threaded WASM needs."""
from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ISOLATION = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
             "Cross-Origin-Resource-Policy": "same-origin"}


class _Handler(SimpleHTTPRequestHandler):
    fixtures: Path

    def translate_path(self, path: str) -> str:
        clean = path.split("?", 1)[0]
        if clean.startswith("/fixtures/"):
            return str(self.fixtures / clean[len("/fixtures/"):])
        return super().translate_path(path)

    def end_headers(self) -> None:
        for k, v in ISOLATION.items():
            self.send_header(k, v)
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


_Handler.extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript",
                           ".js": "text/javascript", ".wasm": "application/wasm"}


def serve(dist: Path, fixtures: Path) -> tuple[ThreadingHTTPServer, str]:
    """Start serving on a free localhost port in a daemon thread; returns the server and its base URL."""
    handler = type("Handler", (_Handler,), {"fixtures": fixtures})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(dist)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
