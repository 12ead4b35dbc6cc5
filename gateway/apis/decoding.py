"""Any API's request body as the internal request, for what reads only its routing (route
explain): nothing is looked up, so a Responses body's ``previous_response_id`` adds no history."""

from __future__ import annotations

from contracts.errors import InvalidRequest
from contracts.wire import ChatCompletionRequest
from gateway.apis.messages import chat_request as messages_chat_request
from gateway.apis.messages_wire import MessagesRequest
from gateway.apis.responses import chat_request as responses_chat_request
from gateway.apis.responses import messages_of
from gateway.apis.responses_wire import ResponsesRequest
from gateway.request_body import validate_payload

APIS = ("chat", "responses", "messages")


def internal_request(api: str, payload: object) -> ChatCompletionRequest:
    if api == "chat":
        return validate_payload(ChatCompletionRequest, payload)
    if api == "responses":
        asked = validate_payload(ResponsesRequest, payload)
        return responses_chat_request(asked, messages_of(asked.input))
    if api == "messages":
        return messages_chat_request(validate_payload(MessagesRequest, payload))
    raise InvalidRequest(f"api={api!r}: choose one of {', '.join(APIS)}", param="api")
