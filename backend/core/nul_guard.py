"""Refuse JSON request bodies that carry a NUL character (``\\u0000``) in a string.

PostgreSQL text columns cannot hold NUL, and no name, note or instruction needs one; without this a
NUL reached the database (a misleading "out of range" error on PostgreSQL, the character stored on
SQLite). A raw NUL byte is not valid JSON and already fails validation; the escape is what gets
through. ``\\\\u0000`` (an escaped backslash followed by the text ``u0000``) is not a NUL and passes.
"""
from __future__ import annotations

import json
import re

NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
MESSAGE = "the request holds a NUL character (\\u0000) in a text value, which Maskloop does not store"


class NulGuard:
    """ASGI middleware: a JSON body with a NUL escape gets a 400 before the route sees it."""

    def __init__(self, app) -> None:  # noqa: ANN001
        self.app = app

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: let the app see it
                await self.app(scope, _replay([message]), send)
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if NUL_ESCAPE.search(body):
            payload = json.dumps({"detail": MESSAGE}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
            await send({"type": "http.response.start", "status": 400, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
            return
        await self.app(scope, _replay([{"type": "http.request", "body": body, "more_body": False}], receive), send)


def _is_json(scope) -> bool:  # noqa: ANN001
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return b"json" in value.lower()
    return False


def _replay(messages: list[dict], receive=None):  # noqa: ANN001
    """A ``receive`` that gives ``messages`` first, then defers to the original (disconnects)."""
    queue = list(messages)

    async def replayed() -> dict:
        if queue:
            return queue.pop(0)
        if receive is not None:
            return await receive()
        return {"type": "http.disconnect"}

    return replayed
