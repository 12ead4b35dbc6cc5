-- wrk script: POST one chat completion whose prompt holds an email and a phone number.
local model = os.getenv("MODEL") or "plain"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("KEY") or "sk-bench")
local n = 0
request = function()
  n = n + 1
  local body = '{"model":"' .. model .. '","messages":[{"role":"user","content":"Summarize ticket ' .. n .. ': customer jane.doe@example.com called from +1 415 555 2671 about a late order and wants a refund."}]}'
  return wrk.format(nil, "/v1/chat/completions", nil, body)
end
