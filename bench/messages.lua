-- wrk script: POST one Anthropic Messages request; MODEL and KEY are read from the environment.
local model = os.getenv("MODEL") or "upstream-model"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-api-key"] = os.getenv("KEY") or "sk-bench"
wrk.headers["anthropic-version"] = "2023-06-01"
local n = 0
request = function()
  n = n + 1
  local body = '{"model":"' .. model .. '","max_tokens":64,"messages":[{"role":"user","content":"Summarize: the quick brown fox number ' .. n .. ' jumps over the lazy dog."}]}'
  return wrk.format(nil, "/v1/messages", nil, body)
end
