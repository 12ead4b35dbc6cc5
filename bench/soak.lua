-- wrk script: every 10th request goes to the route with the failing primary.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("KEY") or "sk-bench")
local n = 0
request = function()
  n = n + 1
  local model = (n % 10 == 0) and "flaky" or "general"
  local body = '{"model":"' .. model .. '","messages":[{"role":"user","content":"Soak request number ' .. n .. '."}]}'
  return wrk.format(nil, "/v1/chat/completions", nil, body)
end
