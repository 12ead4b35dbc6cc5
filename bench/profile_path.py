"""Profile the pinned path under load: the gateway in this process under cProfile (uvloop and
httptools, as served), wrk driving it against the fixed-answer upstream, the top functions by their
own time written to bench/results/profile-pinned.txt.
    .venv/bin/python -m bench.profile_path [SECONDS] [CONNECTIONS]
PROFILE_STATS=FILE also writes the raw statistics there (``python -m pstats FILE`` reads them).
Needs the upstream of shared/bench/upstream-nginx.conf on 127.0.0.1:18000 and wrk.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path

import uvicorn
import uvloop

from gateway.app import create_app
from gateway.rules import read_rules
from gateway.settings import Settings
from support.ports import free_port

ROOT = Path(__file__).parents[1]
OUT = ROOT / "bench" / "results" / "profile-pinned.txt"
TOP = 45


def main() -> None:
    seconds, connections = (
        (int(sys.argv[1]) if len(sys.argv) > 1 else 10),
        (int(sys.argv[2]) if len(sys.argv) > 2 else 32),
    )
    shared = Path(os.environ.get("SHARED", ROOT.parent / "shared"))
    os.environ.setdefault("BENCH_API_KEY", "sk-bench-turnout-0123456789")
    rules, _ = read_rules(ROOT / "bench" / "rules.overhead.yaml")
    port = free_port()
    app = create_app(Settings(log_level="warning"), rules, owns_process=True)  # as served: the collector tuned
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning", loop="uvloop", http="httptools"))
    profile = cProfile.Profile()
    load: list[str] = []

    def drive() -> None:
        while not server.started:
            time.sleep(0.05)
        env = {**os.environ, "KEY": os.environ["BENCH_API_KEY"], "MODEL": "upstream-model"}
        wrk = [
            "wrk",
            "-t1",
            f"-c{connections}",
            "-d2s",
            "-s",
            str(shared / "bench" / "chat.lua"),
            f"http://127.0.0.1:{port}",
        ]
        subprocess.run(wrk, env=env, capture_output=True, check=True)  # warm up, unprofiled
        loop.call_soon_threadsafe(profile.enable)  # in the server's thread: cProfile sees only its own
        wrk[3] = f"-d{seconds}s"
        load.append(subprocess.run(wrk, env=env, capture_output=True, text=True, check=True).stdout)
        loop.call_soon_threadsafe(profile.disable)
        server.should_exit = True

    loop = uvloop.new_event_loop()
    threading.Thread(target=drive, daemon=True).start()
    loop.run_until_complete(server.serve())
    requests = next((line for line in load[0].splitlines() if "Requests/sec" in line), "?") if load else "?"
    if "PROFILE_STATS" in os.environ:  # the raw statistics too, for pstats' callers and callees
        profile.dump_stats(os.environ["PROFILE_STATS"])
    text = io.StringIO()
    stats = pstats.Stats(profile, stream=text)
    stats.sort_stats("tottime").print_stats(TOP)
    header = f"# pinned path, c={connections}, {seconds} s under cProfile (which slows it): {requests.strip()}\n"
    OUT.write_text(header + _trimmed(text.getvalue()))
    print(header + _trimmed(text.getvalue()))


def _trimmed(report: str) -> str:
    """Paths shortened to the package, so the table reads the same on every machine."""
    paths = sysconfig.get_paths()
    for prefix in (str(ROOT), paths["purelib"], paths["platlib"], paths["stdlib"]):
        report = report.replace(prefix + "/", "")
    return report


if __name__ == "__main__":
    main()
