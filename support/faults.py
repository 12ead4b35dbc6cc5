"""An OpenAI-compatible upstream that misbehaves on purpose, on a loopback port.

A raw asyncio HTTP/1.1 server, so that it can do what a well-behaved framework will not:
hang, reset the connection, cut a stream. The fault is the first path segment of the
backend's endpoint, ``http://127.0.0.1:PORT/<fault>/v1``:

    ok                  answers at once (JSON or SSE, as asked)
    hang                reads the request and never answers
    slow-<ms>           waits before the first byte, then answers
    slowstream-<ms>     streams five chunks, <ms> apart
    status-<code>       answers with that status (429 carries Retry-After: 7)
    malformed           200 with a body that is not JSON
    reset               reads the request, then resets the connection
    cut-<n>             streams n chunks, then closes without finishing
    endless             200 JSON whose body never ends (chunked, until the gateway hangs up)
    endlessline         200 SSE whose first line never ends
    huge-<mb>           a valid completion (or stream) whose content is <mb> MB
    echoauth-<code>     answers <code> with the request's Authorization header in its message
                        (as an error event mid-stream when the request streams)
    script              answers ``server.scripts[name]`` holds for the last user message (JSON only)
    cold-<ms>           waits <ms> first when nothing asked it for COLD_IDLE_S (a model that unloads
                        when idle), then answers
    <name>              whatever ``server.modes[name]`` says (a switch tests flip)

``events`` records ``(name, "request")`` for each call and ``(name, "closed")`` when the
gateway hung up before the answer was complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

COLD_IDLE_S = 2.0


class FaultServer:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.last_seen: dict[tuple[str, str], float] = {}
        """``time.perf_counter()`` of each (name, event)'s latest occurrence."""
        self.modes: dict[str, str] = {}
        self.health: dict[str, int] = {}
        """Status of ``GET /<name>/v1/models`` per name; 200 unless set."""
        self._server: asyncio.Server | None = None
        self.url = ""
        self.last_headers: dict[str, str] = {}
        """The headers of the latest chat request."""
        self.scripts: dict[str, dict[str, str]] = {}
        """Per backend name playing ``script``: the answer to each last user message (else "I do not know")."""

    def endpoint(self, name: str) -> str:
        return f"{self.url}/{name}/v1"

    def backend(self, fault: str) -> tuple[str, str]:
        """A fresh backend name playing ``fault`` (so tests sharing the server count apart), and its endpoint."""
        name = f"b{len(self.modes)}-{fault}"
        self.modes[name] = fault
        return name, self.endpoint(name)

    def count(self, name: str, event: str = "request") -> int:
        return self.events.count((name, event))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                method, path, headers, body = request
                name = path.strip("/").split("/")[0]
                if method == "GET":
                    await _send_json(writer, self.health.get(name, 200), {"object": "list", "data": []})
                    continue
                previous = self.last_seen.get((name, "request"))
                self._note(name, "request")
                fault = self.modes.get(name, name)
                if fault.startswith("cold-") and (previous is None or time.perf_counter() - previous >= COLD_IDLE_S):
                    await asyncio.sleep(int(fault.removeprefix("cold-")) / 1000)
                self.last_headers = headers
                if fault == "script":
                    await _send_json(writer, 200, completion(self._scripted(name, json.loads(body or b"{}"))))
                    continue
                is_whole = await self._answer(fault, json.loads(body or b"{}"), reader, writer)
                if not is_whole:
                    self._note(name, "closed")
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    def _scripted(self, name: str, body: dict[str, object]) -> str:
        messages = body.get("messages")
        last = messages[-1].get("content") if isinstance(messages, list) and messages else None
        return self.scripts.get(name, {}).get(str(last), "I do not know")

    def _note(self, name: str, event: str) -> None:
        self.events.append((name, event))
        self.last_seen[(name, event)] = time.perf_counter()

    async def _answer(
        self, fault: str, body: dict[str, object], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Play the fault; False when the client closed the connection first."""
        kind, _, arg = fault.partition("-")
        is_stream = bool(body.get("stream"))
        if kind == "hang":
            await reader.read()  # until the gateway hangs up
            return False
        if kind == "slow" and not await _wait_unless_closed(reader, int(arg) / 1000):
            return False
        if kind == "status":
            headers = {"retry-after": "7"} if arg == "429" else {}
            await _send_json(writer, int(arg), {"error": {"message": f"injected {arg}", "type": "x"}}, headers)
            return True
        if kind == "malformed":
            await _send_raw(writer, 200, b"{not json", "application/json")
            return True
        if kind == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return True
        if kind in ("endless", "endlessline"):
            return await _endless(writer, reader, is_line=kind == "endlessline")
        if kind == "huge":
            return await _huge(writer, int(arg), is_stream)
        if kind == "echoauth":
            said = f"bad request from {self.last_headers.get('authorization', '')}"
            if is_stream:
                return await _stream_error(writer, said)
            await _send_json(writer, int(arg), {"error": {"message": said, "type": "x"}})
            return True
        if not is_stream and kind in ("ok", "slow", "slowstream", "cold"):
            await _send_json(writer, 200, completion(f"from {fault}"))
            return True
        gap = int(arg) / 1000 if kind == "slowstream" else 0.0
        chunks = int(arg) if kind == "cut" else 5
        return await _stream(writer, reader, chunks, gap, is_cut=kind == "cut")


@asynccontextmanager
async def fault_server() -> AsyncIterator[FaultServer]:
    server = FaultServer()
    await server.start()
    try:
        yield server
    finally:
        await server.aclose()


def completion(content: str) -> dict[str, object]:
    return {
        "id": "f1",
        "object": "chat.completion",
        "created": 1,
        "model": "fault",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }


def chunk(content: str, finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": {"content": content}, "finish_reason": finish}
    event = {"id": "f1", "object": "chat.completion.chunk", "created": 1, "model": "fault", "choices": [choice]}
    return b"data: " + json.dumps(event).encode() + b"\n\n"


async def _stream(
    writer: asyncio.StreamWriter, reader: asyncio.StreamReader, chunks: int, gap_s: float, is_cut: bool
) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
    for i in range(chunks):
        if i and gap_s and not await _wait_unless_closed(reader, gap_s):
            return False
        is_last = i == chunks - 1 and not is_cut
        _write_chunk(writer, chunk(f"part{i} ", "stop" if is_last else None))
        await writer.drain()
    if is_cut:
        writer.transport.abort()
        return True
    _write_chunk(writer, b"data: [DONE]\n\n")
    writer.write(b"0\r\n\r\n")
    await writer.drain()
    return True


async def _endless(writer: asyncio.StreamWriter, reader: asyncio.StreamReader, is_line: bool) -> bool:
    kind = "text/event-stream" if is_line else "application/json"
    writer.write(f"HTTP/1.1 200 OK\r\ncontent-type: {kind}\r\ntransfer-encoding: chunked\r\n\r\n".encode())
    _write_chunk(writer, b"data: {" if is_line else b'{"id": "')
    block = b"a" * 65536
    try:
        while not reader.at_eof():
            _write_chunk(writer, block)
            await writer.drain()
    except ConnectionError:
        pass
    return False


async def _huge(writer: asyncio.StreamWriter, megabytes: int, is_stream: bool) -> bool:
    content = "x" * (megabytes * 1024 * 1024)
    if not is_stream:
        await _send_json(writer, 200, completion(content))
        return True
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
    _write_chunk(writer, chunk(content, "stop") + b"data: [DONE]\n\n")
    writer.write(b"0\r\n\r\n")
    await writer.drain()
    return True


async def _stream_error(writer: asyncio.StreamWriter, message: str) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
    _write_chunk(writer, chunk("partial "))
    _write_chunk(writer, b"data: " + json.dumps({"error": {"message": message}}).encode() + b"\n\n")
    writer.write(b"0\r\n\r\n")
    await writer.drain()
    return True


def _write_chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")


async def _wait_unless_closed(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Sleep, unless the peer closes first (then False)."""
    try:
        await asyncio.wait_for(reader.read(), seconds)
    except TimeoutError:
        return True
    return False


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return method, path, headers, body


async def _send_json(
    writer: asyncio.StreamWriter, status: int, payload: object, headers: dict[str, str] | None = None
) -> None:
    await _send_raw(writer, status, json.dumps(payload).encode(), "application/json", headers)


async def _send_raw(
    writer: asyncio.StreamWriter, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
) -> None:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    head = f"HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n{extra}\r\n"
    writer.write(head.encode() + body)
    await writer.drain()
