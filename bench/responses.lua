-- wrk script: POST one OpenAI Responses request; MODEL and KEY are read from the environment.
local model = os.getenv("MODEL") or "upstream-model"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("KEY") or "sk-bench")
local n = 0
request = function()
  n = n + 1
  local body = '{"model":"' .. model .. '","store":false,"input":"Summarize: the quick brown fox number ' .. n .. ' jumps over the lazy dog."}'
  return wrk.format(nil, "/v1/responses", nil, body)
end
