from __future__ import annotations

import pytest

from tests.gateway.harness import AUTH, LIMITED_KEY, chat_body, gateway


def assert_openai_error(body: dict[str, object], error_type: str) -> dict[str, object]:
    error = body["error"]
    assert isinstance(error, dict)
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == error_type
    return error


async def test_missing_key_is_401() -> None:
    async with gateway() as client:
        response = await client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 401
    assert assert_openai_error(response.json(), "authentication_error")["code"] == "missing_api_key"


async def test_wrong_key_is_401() -> None:
    async with gateway() as client:
        response = await client.post(
            "/v1/chat/completions", json=chat_body(), headers={"authorization": "Bearer sk-no"}
        )
    assert response.status_code == 401
    assert assert_openai_error(response.json(), "authentication_error")["code"] == "invalid_api_key"


async def test_key_outside_its_routes_is_403() -> None:
    async with gateway() as client:
        response = await client.post(
            "/v1/chat/completions", json=chat_body("general"), headers={"authorization": f"Bearer {LIMITED_KEY}"}
        )
    assert response.status_code == 403
    assert_openai_error(response.json(), "permission_error")


async def test_oversized_body_is_413() -> None:
    big = chat_body(messages=[{"role": "user", "content": "x" * 2000}])
    async with gateway(max_body_bytes=1000) as client:
        response = await client.post("/v1/chat/completions", json=big, headers=AUTH)
    assert response.status_code == 413
    assert_openai_error(response.json(), "invalid_request_error")


async def test_oversized_chunked_body_without_length_is_413() -> None:
    async def body():  # type: ignore[no-untyped-def]
        for _ in range(10):
            yield b"x" * 500

    async with gateway(max_body_bytes=1000) as client:
        response = await client.post("/v1/chat/completions", content=body(), headers=AUTH)
    assert response.status_code == 413


@pytest.mark.parametrize("body", [b"{", b"", b"not json", b'{"model": "auto",}'])
async def test_invalid_json_is_400(body: bytes) -> None:
    async with gateway() as client:
        response = await client.post("/v1/chat/completions", content=body, headers=AUTH)
    assert response.status_code == 400
    assert assert_openai_error(response.json(), "invalid_request_error")["code"] == "invalid_json"


async def test_unknown_model_is_404_naming_the_model() -> None:
    async with gateway() as client:
        response = await client.post("/v1/chat/completions", json=chat_body("gpt-17"), headers=AUTH)
    assert response.status_code == 404
    error = assert_openai_error(response.json(), "invalid_request_error")
    assert error["code"] == "model_not_found"
    assert error["param"] == "model"
    assert "gpt-17" in str(error["message"])


async def test_unknown_forced_route_is_404() -> None:
    async with gateway() as client:
        response = await client.post(
            "/v1/chat/completions", json=chat_body(), headers={**AUTH, "x-turnout-route": "nope"}
        )
    assert response.status_code == 404
    assert response.json()["error"]["param"] == "x-turnout-route"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": 3, "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "auto", "messages": "hello"}, "messages"),
        ({"model": "auto", "messages": []}, "messages"),
        ({"model": "auto", "messages": [{"content": "x"}]}, "messages.0.role"),
        ({"model": "auto", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, "temperature"),
        ({"model": "auto", "messages": [{"role": "user", "content": "x"}], "stream": "yes please"}, "stream"),
        ([1, 2], "body"),
    ],
)
async def test_wrong_types_are_422_naming_the_field(body: object, param: str) -> None:
    async with gateway() as client:
        response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 422
    assert assert_openai_error(response.json(), "invalid_request_error")["param"] == param


async def test_unknown_path_is_openai_style_404() -> None:
    async with gateway() as client:
        response = await client.get("/v1/nothing", headers=AUTH)
    assert response.status_code == 404
    assert_openai_error(response.json(), "invalid_request_error")


async def test_wrong_method_is_openai_style_405() -> None:
    async with gateway() as client:
        response = await client.get("/v1/chat/completions", headers=AUTH)
    assert response.status_code == 405
    assert_openai_error(response.json(), "invalid_request_error")


def user_message(content: object) -> list[dict[str, object]]:
    return [{"role": "user", "content": content}]


@pytest.mark.parametrize("stream_options", ["include_usage", ["include_usage"], 1, {"include_usage": "yes"}])
async def test_malformed_stream_options_on_a_cached_request_is_422(stream_options: object) -> None:
    cached = chat_body(temperature=0)
    async with gateway() as client:
        assert (await client.post("/v1/chat/completions", json=cached, headers=AUTH)).status_code == 200
        again = {**cached, "stream": True, "stream_options": stream_options}
        response = await client.post("/v1/chat/completions", json=again, headers=AUTH)
        still = await client.post("/v1/chat/completions", json=cached, headers=AUTH)
    assert response.status_code == 422
    assert assert_openai_error(response.json(), "invalid_request_error")["param"].startswith("stream_options")
    assert still.headers["x-turnout-cache"] == "hit"


@pytest.mark.parametrize("text", [7, None, ["a"], {"t": 1}])
async def test_content_part_text_that_is_not_a_string_is_422(text: object) -> None:
    body = chat_body(messages=user_message([{"type": "text", "text": text}]))
    async with gateway() as client:
        response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 422
    assert assert_openai_error(response.json(), "invalid_request_error")["param"].startswith("messages.0.content.0")


@pytest.mark.parametrize(
    "part", [{"type": "text"}, {"type": "video", "video": "x"}, {"text": "no type"}, "just a string", 3]
)
async def test_content_part_of_unknown_shape_is_422(part: object) -> None:
    body = chat_body(messages=user_message([part]))
    async with gateway() as client:
        response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 422
    assert assert_openai_error(response.json(), "invalid_request_error")["param"].startswith("messages.0.content")


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"max_tokens": 2**64}, "max_tokens"),
        ({"seed": -(2**70)}, "seed"),
        ({"vendor_knob": 2**64}, "body"),
        ({"vendor": {"deep": [1, 2**80]}}, "body"),
    ],
)
async def test_integers_beyond_64_bits_on_the_cache_path_are_422(extra: dict[str, object], param: str) -> None:
    body = chat_body(temperature=0, **extra)
    async with gateway() as client:
        response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
        healthy = await client.post("/v1/chat/completions", json=chat_body(temperature=0), headers=AUTH)
    assert response.status_code == 422
    error = assert_openai_error(response.json(), "invalid_request_error")
    assert error["param"] == param
    assert "64-bit" in str(error["message"]) or param != "body"
    assert healthy.status_code == 200


@pytest.mark.parametrize("value", [b"\xb2", "١٢٣".encode(), b"12\xb2", b"+5", b"1_000", b" 5 0", b"-3"])
async def test_budget_header_of_anything_but_ascii_digits_is_400(value: bytes) -> None:
    async with gateway() as client:
        response = await client.post(
            "/v1/chat/completions", json=chat_body(), headers={**AUTH, "x-turnout-budget-ms": value}
        )
    assert response.status_code == 400
    assert assert_openai_error(response.json(), "invalid_request_error")["param"] == "x-turnout-budget-ms"


async def test_content_length_of_non_ascii_digits_is_a_4xx() -> None:
    async with gateway() as client:
        response = await client.post("/v1/chat/completions", content=b"{}", headers={**AUTH, "content-length": b"\xb2"})
    assert 400 <= response.status_code < 500


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (chat_body(stream="true"), "stream"),
        (chat_body(stream=1), "stream"),
        (chat_body(messages=[{"role": "bogus", "content": "x"}]), "messages.0.role"),
        (chat_body(messages=[{"role": "user", "content": 5}]), "messages.0.content"),
        (chat_body(temperature="0.5"), "temperature"),
        (chat_body(max_tokens="10"), "max_tokens"),
        (chat_body(max_tokens=1.5), "max_tokens"),
        (chat_body(model=["auto"]), "model"),
        (chat_body(logprobs="false"), "logprobs"),
    ],
)
async def test_types_the_openai_api_rejects_are_422(body: dict[str, object], param: str) -> None:
    async with gateway() as client:
        response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 422
    assert assert_openai_error(response.json(), "invalid_request_error")["param"] == param


async def test_well_formed_multimodal_and_tool_messages_pass() -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this"},
                {"type": "image_url", "image_url": {"url": "data:,"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "1", "content": "42"},
    ]
    async with gateway() as client:
        response = await client.post(
            "/v1/chat/completions", json=chat_body(messages=messages, seed=2**63 - 1), headers=AUTH
        )
    assert response.status_code == 200
