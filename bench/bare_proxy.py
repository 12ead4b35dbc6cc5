"""The reference for what Python does here: a bare-bones proxy on the gateway's own server stack.

Raw ASGI under the same uvicorn (uvloop, httptools), one aiohttp session like the gateway's
transport, and nothing else: no auth, routing, validation or records. It forwards each POST body to
the fixed-answer upstream and relays the answer.
    .venv/bin/python -m bench.bare_proxy [PORT] [UPSTREAM]
"""

from __future__ import annotations

import sys
from typing import Any

import aiohttp
import uvicorn

UPSTREAM = "http://127.0.0.1:18000"


class BareProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        assert self.session is not None
        async with self.session.post(
            self.upstream + scope["path"], data=body, headers={"content-type": "application/json"}
        ) as answer:
            payload = await answer.read()
            status = answer.status
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
        )
        await send({"type": "http.response.body", "body": payload})

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                connector = aiohttp.TCPConnector(limit=256)
                self.session = aiohttp.ClientSession(connector=connector)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8099
    upstream = sys.argv[2] if len(sys.argv) > 2 else UPSTREAM
    uvicorn.run(BareProxy(upstream), host="127.0.0.1", port=port, log_level="warning", loop="uvloop", http="httptools")
