"""Headers on every admin response: nothing cached (rules, reports and keys' answers are private),
no content sniffing, and the console page under a Content-Security-Policy that lets it run only its
own script and never be framed (its Apply and Rollback cannot be clickjacked)."""

from __future__ import annotations

import base64
import hashlib
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

ADMIN_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


def console_policy(page: bytes) -> str:
    """The console's CSP: its one inline script by hash, styles inline, calls to this origin only."""
    scripts = re.findall(rb"<script>(.*?)</script>", page, flags=re.DOTALL)
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s).digest()).decode()}'" for s in scripts)
    return (
        f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; img-src data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


class AdminHeaders:
    """Adds :data:`ADMIN_HEADERS` to responses under ``/admin``; other paths pass untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/admin"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *ADMIN_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)
