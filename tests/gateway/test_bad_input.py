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
