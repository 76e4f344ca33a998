-- wrk script: like post.lua, but every request carries one of 1024 user ids in X-User-Id, so
-- a gateway with sticky hashing spreads users over versions. Requests are built once in
-- init() and cycled, so the per-request cost is one Lua call for every proxy alike.
-- (post.lua, loaded below, also sets wrk.method/body/headers; request() below overrides them.)
-- REQ_BYTES (environment) pads each body to that many bytes (the large-request scenario).
local requests = {}
local n = 1024
local i = 0
local body = '{"instances":[[0.5,1.5,2.5,3.5]]}'
local size = tonumber(os.getenv("REQ_BYTES") or "0") or 0
if size > #body then
  local head = '{"instances":[[0.5,1.5,2.5,3.5]],"pad":"'
  body = head .. string.rep("x", size - #head - 2) .. '"}'
end

function init(args)
  for k = 1, n do
    requests[k] = wrk.format("POST", nil, {
      ["Content-Type"] = "application/json",
      ["X-User-Id"] = "user-" .. k,
    }, body)
  end
end

function request()
  i = i % n + 1
  return requests[i]
end

-- The WRKRESULT summary line is post.lua's: load it from beside this file and keep its done().
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "post.lua")
