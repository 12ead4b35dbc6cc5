"""The admin surface against a careless or hostile editor: what a rules document may make the
gateway do is bounded (patterns in linear time, documents bounded before anything is built,
environment variables limited to secrets meant for rules). A real ``turnout serve`` process, so a
gateway that stalls shows as probes that go unanswered, not as a test that hangs."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.gateway.harness import AUTH, RULES, chat_body
from tests.servers import gateway_process

ADMIN_KEY = "attack-admin-key-0123456789"
EDITOR = {"authorization": f"Bearer {ADMIN_KEY}"}
PROBE_TIMEOUT_S = 5.0
"""A probe unanswered this long means a stalled event loop (it answers in milliseconds otherwise)."""


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = tmp_path_factory.mktemp("attacks") / "rules.yaml"
    config.write_text(RULES)
    with gateway_process(config, TURNOUT_ADMIN_KEY=ADMIN_KEY) as (found, _):
        yield found


def put(url: str, text: str) -> httpx.Response:
    version = httpx.get(url + "/admin/rules", headers=EDITOR, timeout=PROBE_TIMEOUT_S).json()["version"]
    return httpx.put(url + "/admin/rules", content=text, headers={**EDITOR, "if-match": f'"{version}"'}, timeout=60)


def probes_answered_while(url: str, work: threading.Thread) -> int:
    """How many /healthz probes were answered while ``work`` ran; raises if one went unanswered."""
    answered = 0
    work.start()
    while work.is_alive() or answered == 0:
        assert httpx.get(url + "/healthz", timeout=PROBE_TIMEOUT_S).status_code == 200
        answered += 1
    work.join()
    return answered


def test_a_catastrophic_pattern_cannot_stall_the_gateway(url: str) -> None:
    rule = "rules: [{name: evil, when: {regex: '(a+)+$'}, route: code}]\n"
    applied = put(url, RULES.replace("router: {kind: default}\n", "router: {kind: default}\n" + rule))
    assert applied.status_code == 200, applied.text
    answers: list[httpx.Response] = []
    prompt = chat_body(messages=[{"role": "user", "content": "a" * 4096 + "!"}])

    def send() -> None:
        for _ in range(3):
            answers.append(httpx.post(url + "/v1/chat/completions", json=prompt, headers=AUTH, timeout=60))

    assert probes_answered_while(url, threading.Thread(target=send)) > 0
    assert len(answers) == 3
    assert all(a.status_code in {502, 503} for a in answers)  # answered (its backend is unreachable here)


def test_a_pattern_re2_cannot_run_is_refused_at_its_line(url: str) -> None:
    rule = "rules: [{name: lookbehind, when: {regex: '(?<=secret)x'}, route: code}]\n"
    text = RULES.replace("router: {kind: default}\n", "router: {kind: default}\n" + rule)
    refused = put(url, text)
    assert refused.status_code == 422
    (error,) = refused.json()["errors"]
    assert error["path"] == "rules[0].when.regex"
    assert "RE2" in error["message"]
    assert error["line"] == text.splitlines().index(rule.strip()) + 1


def billion_laughs(levels: int = 9) -> str:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        name, prev = chr(97 + i), chr(96 + i)
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("document", "said"),
    [
        (billion_laughs(), "aliases are expanded"),
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper"),
        ("a: " + "9" * 5000 + "\n", "cannot be read"),
        ("a: " + "x" * (1024 * 1024 + 1) + "\n", None),
    ],
    ids=["alias-bomb", "deep", "huge-integer", "too-large"],
)
@pytest.mark.parametrize("path", ["/admin/rules/validate", "/admin/rules/dry-run"])
def test_a_hostile_document_is_refused_before_anything_is_built(
    url: str, document: str, said: str | None, path: str
) -> None:
    answers: list[httpx.Response] = []

    def send() -> None:
        answers.append(httpx.post(url + path, content=document, headers=EDITOR, timeout=60))

    assert probes_answered_while(url, threading.Thread(target=send)) > 0
    (answer,) = answers
    assert answer.status_code == (413 if said is None else 422), answer.text
    assert "error" in answer.json()
    if said is not None:
        assert said in answer.json()["errors"][0]["message"]


def test_a_hostile_put_is_refused_and_audited(url: str) -> None:
    refused = put(url, billion_laughs())
    audit = httpx.get(url + "/admin/rules/audit?limit=1", headers=EDITOR).json()
    assert refused.status_code == 422
    assert audit[0]["action"] == "rejected"


@pytest.mark.parametrize(
    ("method", "path", "body", "headers"),
    [
        ("GET", "/admin/rules/diff?from=%C2%B2&to=1", None, {}),
        ("GET", "/admin/rules/diff?from=" + "9" * 5000 + "&to=1", None, {}),
        ("GET", "/admin/rules/history?limit=" + "9" * 5000, None, {}),
        ("GET", "/admin/rules/history?limit=abc", None, {}),
        ("PUT", "/admin/rules", RULES, {"if-match": '"' + "9" * 5000 + '"'}),
        ("PUT", "/admin/rules", RULES, {"if-match": '"1"', "x-turnout-change-message": "x" * 2000}),
        ("POST", "/admin/rules/rollback", '{"version": true}', {"content-type": "application/json"}),
        ("POST", "/admin/rules/rollback", '{"version": 1, "message": "ok\\nforged line"}', {}),
        ("POST", "/admin/rules/dry-run", None, {"content-type": "application/json"}),
    ],
    ids=["unicode-digit", "huge-version", "huge-limit", "word-limit", "huge-if-match", "long-message",
         "bool-version", "control-characters", "too-many-prompts"],
)  # fmt: skip
def test_bad_admin_input_is_a_4xx_in_the_error_shape(
    url: str, method: str, path: str, body: str | None, headers: dict[str, str]
) -> None:
    if path.endswith("dry-run"):
        body = json.dumps({"yaml": RULES, "prompts": [{"prompt": "hi"}] * 1001})
    answer = httpx.request(method, url + path, content=body, headers={**EDITOR, **headers}, timeout=30)
    assert 400 <= answer.status_code < 500, answer.text
    assert set(answer.json()["error"]) >= {"message", "type", "param", "code"}


def test_ten_thousand_routes_are_refused_while_the_gateway_keeps_answering(url: str) -> None:
    routes = "".join(f"  r{i}: {{backends: [primary]}}\n" for i in range(10_000))
    document = RULES.replace("routes:\n", "routes:\n" + routes, 1)
    answers: list[httpx.Response] = []

    def send() -> None:
        answers.append(put(url, document))

    assert probes_answered_while(url, threading.Thread(target=send)) > 0
    assert answers[0].status_code == 422
    assert "routes" in answers[0].text


@pytest.mark.parametrize("version", ["9" * 300, "%C2%B2", "-1"])
def test_an_impossible_version_number_is_a_4xx(url: str, version: str) -> None:
    answer = httpx.get(f"{url}/admin/rules/versions/{version}", headers=EDITOR, timeout=30)
    assert 400 <= answer.status_code < 500
    assert "error" in answer.json()
