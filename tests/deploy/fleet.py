"""What Kubernetes would do, on loopback: gateway replicas as processes (tests.servers.GatewayProcess), a
round-robin proxy in front of them (Debian's nginx, standing in for the Service), an endpoints
controller that takes a terminating replica out before it is signalled and adds a new one once
its readiness probe passes, and client load through the official ``openai`` SDK."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai

from support.faults import FaultServer
from support.ports import free_port
from tests.servers import GatewayProcess

KEY = "sk-rehearsal-load"
LIMITED_KEY = "sk-rehearsal-limited"
REPORTED_KEY = "sk-rehearsal-reported"
ADMIN_KEY = "rehearsal-admin-key-0123"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
PRE_STOP_S = 0.5
"""How long a replica keeps serving after the endpoints forgot it (the Deployment's preStop sleep)."""


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def rules_text(upstream: str, backend: str = "upstream") -> str:
    """One route on ``backend``: ``upstream`` streams five chunks 600 ms apart (answers at once otherwise),
    so that a stream outlasts the preStop sleep and is in flight when its replica is signalled."""
    return f"""
backends:
  upstream: {{kind: openai, endpoint: "{upstream}/slowstream-600/v1", model: upstream-model}}
  other: {{kind: openai, endpoint: "{upstream}/ok/v1", model: other-model}}
routes:
  general: {{backends: [{backend}], description: everything}}
default_route: general
router: {{kind: default}}
api_keys:
  - {{tenant: load, sha256: "{sha(KEY)}", limits: {{requests_per_minute: 1000000}}}}  # counted in Redis
  - {{tenant: reported, sha256: "{sha(REPORTED_KEY)}"}}
  - {{tenant: limited, sha256: "{sha(LIMITED_KEY)}", limits: {{requests_per_minute: 5}}}}
"""


@contextmanager
def threaded_upstream() -> Iterator[FaultServer]:
    """The fault-injecting upstream on an event loop of its own, so that tests may block."""
    server = FaultServer()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.aclose(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


class RoundRobin:
    """nginx in front of the replicas (the Service); ``point_at`` is the endpoints controller's write."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _write(self, ports: list[int]) -> None:
        servers = "\n".join(f"    server 127.0.0.1:{p} max_fails=0;" for p in ports)
        d = self.workdir
        (d / "nginx.conf").write_text(f"""
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  # No keep-alive toward clients: a reload closes idle client connections, and a client that sends on
  # one at that moment sees a connection error. That is this stand-in's race (a Kubernetes Service
  # forwards at L4 and never reloads like this), not the gateway's, so it is kept out of the count.
  keepalive_timeout 0;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  upstream gateways {{
{servers}
  }}
  server {{
    listen 127.0.0.1:{self.port};
    location / {{
      proxy_pass http://gateways;
      proxy_http_version 1.1;
      proxy_buffering off;
      proxy_read_timeout 60s;
    }}
  }}
}}
""")

    def start(self, ports: list[int]) -> None:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self._write(ports)
        self.process = subprocess.Popen([nginx, "-p", str(self.workdir), "-c", str(self.workdir / "nginx.conf")])
        for _ in range(100):
            with contextlib.suppress(OSError):
                httpx.get(self.url + "/healthz", timeout=1)
                return
            time.sleep(0.05)
        raise RuntimeError("nginx did not start: " + (self.workdir / "nginx-error.log").read_text())

    def point_at(self, ports: list[int]) -> None:
        """New endpoints: nginx reloads; connections already open finish on the old workers."""
        assert self.process is not None
        self._write(ports)
        self.process.send_signal(signal.SIGHUP)
        time.sleep(0.2)  # the new workers start within milliseconds; the old ones stop accepting

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGQUIT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
            if self.process.poll() is None:
                self.process.kill()


@dataclass
class Fleet:
    replicas: list[GatewayProcess]
    proxy: RoundRobin
    config: Path
    env: dict[str, str]
    workdir: Path

    def spawn(self) -> GatewayProcess:
        """A new pod: its own port, state folder and log (kept at INFO for its drain lines)."""
        log = self.workdir / f"replica-{len(list(self.workdir.glob('replica-*.log')))}.log"
        state = tempfile.mkdtemp(prefix="turnout-state-", dir=self.workdir)
        return GatewayProcess(self.config, {**self.env, "TURNOUT_STATE_DIR": state}, log).start()

    def rolling_restart(self, before_signal: Callable[[GatewayProcess], None] = lambda replica: None) -> list[str]:
        """Each replica in turn: out of the endpoints, preStop, ``before_signal``, SIGTERM, drained; a new
        one in once ready. The drain lines of the old replicas' logs."""
        drained: list[str] = []
        for index, old in enumerate(list(self.replicas)):
            new = self.spawn()  # maxSurge 1: the new pod first
            new.wait_until("/readyz")
            others = [r.port for r in self.replicas if r is not old]
            self.proxy.point_at([*others, new.port])  # the old pod is Terminating: no new connections
            time.sleep(PRE_STOP_S)
            before_signal(old)
            code = old.terminate()
            assert old.log is not None
            assert code in {0, -signal.SIGTERM}, old.log.read_text()
            drained += [line for line in old.log.read_text().splitlines() if "draining" in line]
            self.replicas[index] = new
        return drained


@contextmanager
def fleet(redis_url: str, upstream: FaultServer, size: int = 3, **env: str) -> Iterator[Fleet]:
    workdir = Path(tempfile.mkdtemp(prefix="turnout-fleet-"))
    config = workdir / "rules.yaml"
    config.write_text(rules_text(upstream.url))
    settings = {"TURNOUT_REDIS_URL": redis_url, "TURNOUT_ADMIN_KEY": ADMIN_KEY, "TURNOUT_RULES_POLL_S": "0.5", **env}
    settings["TURNOUT_LOG_LEVEL"] = "info"
    pods = Fleet([], RoundRobin(workdir), config, settings, workdir)
    pods.replicas = [pods.spawn() for _ in range(size)]
    try:
        for replica in pods.replicas:
            replica.wait_until("/readyz")
        pods.proxy.start([r.port for r in pods.replicas])
        yield pods
    finally:
        pods.proxy.stop()
        for replica in pods.replicas:  # the rolling restart's new ones; the old ones have exited
            replica.kill()
        shutil.rmtree(workdir, ignore_errors=True)


class HeldStreams:
    """Clients connected straight to one replica, each mid-stream: ``open`` returns once every stream has
    its first chunk; ``results`` says how each ended."""

    def __init__(self) -> None:
        self.results: list[str] = []
        self._threads: list[threading.Thread] = []

    def open(self, replica: GatewayProcess, count: int = 2) -> None:
        started = threading.Semaphore(0)
        for n in range(count):
            thread = threading.Thread(target=self._stream, args=(replica.url, n, started), daemon=True)
            thread.start()
            self._threads.append(thread)
        for _ in range(count):
            assert started.acquire(timeout=10), "a held stream did not start"

    def _stream(self, url: str, n: int, started: threading.Semaphore) -> None:
        client = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0, timeout=30)
        messages = [{"role": "user", "content": f"held {url} {n}"}]
        finish = None
        try:
            for chunk in client.chat.completions.create(model="auto", messages=messages, stream=True):  # type: ignore[arg-type]
                if chunk.choices and chunk.choices[0].delta.content and finish is None:
                    started.release()
                    finish = "started"
                if chunk.choices and chunk.choices[0].finish_reason:
                    finish = chunk.choices[0].finish_reason
            self.results.append(str(finish))
        except Exception as exc:
            started.release()
            self.results.append(repr(exc))

    def join(self) -> None:
        for thread in self._threads:
            thread.join(30)


class Load:
    """Clients calling through the proxy until stopped: half of them stream. Every request is
    cacheable (temperature 0, a prompt of its own: a lookup and a write) and rate-limited, so each one
    touches Redis. Every answer is checked whole (a stream must end with its finish reason); anything
    else is a failure, kept with its cause."""

    def __init__(self, url: str, clients: int = 6, key: str = KEY) -> None:
        self.url = url
        self.key = key
        self.outcomes: Counter[str] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _note(self, outcome: str, failure: str | None = None) -> None:
        with self._lock:
            self.outcomes[outcome] += 1
            if failure is not None:
                self.failures.append(failure)

    def _run(self, index: int) -> None:
        client = openai.OpenAI(base_url=self.url + "/v1", api_key=self.key, max_retries=0, timeout=30)
        is_stream = index % 2 == 1
        n = 0
        while not self._stop.is_set():
            n += 1
            messages = [{"role": "user", "content": f"client {index} request {n}"}]
            try:
                if is_stream:
                    stream = client.chat.completions.create(model="auto", messages=messages, stream=True, temperature=0)  # type: ignore[arg-type]
                    chunks = list(stream)
                    if not chunks or chunks[-1].choices[0].finish_reason != "stop":
                        self._note("stream-cut", f"stream {index}/{n} ended without its finish reason")
                        continue
                    self._note("stream")
                else:
                    answer = client.chat.completions.create(model="auto", messages=messages, temperature=0)  # type: ignore[arg-type]
                    assert answer.choices[0].message.content
                    self._note("json")
            except Exception as exc:  # any failure at the client counts, whatever its kind
                self._note(type(exc).__name__, f"{'stream' if is_stream else 'json'} {index}/{n}: {exc!r}")
