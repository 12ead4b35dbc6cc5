"""The APIs callers speak, each a small adapter onto the one request path (:mod:`gateway.serving`):
OpenAI chat completions and embeddings (:mod:`.chat`, :mod:`.embeddings`), the OpenAI Responses API
(:mod:`.responses`) and Anthropic Messages (:mod:`.messages`). :mod:`.routes` mounts them."""
