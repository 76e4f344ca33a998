-- wrk script: like post.lua, but every request carries one of 1024 user ids in X-User-Id, so
-- a gateway with sticky hashing spreads users over versions. Requests are built once in
-- init() and cycled, so the per-request cost is one Lua call for every proxy alike.
local requests = {}
local n = 1024
local i = 0

function init(args)
  for k = 1, n do
    requests[k] = wrk.format("POST", nil, {
      ["Content-Type"] = "application/json",
      ["X-User-Id"] = "user-" .. k,
    }, '{"instances":[[0.5,1.5,2.5,3.5]]}')
  end
end

function request()
  i = i % n + 1
  return requests[i]
end

function done(summary, latency, reqs)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    "WRKRESULT requests=%d duration_s=%.3f rps=%.1f p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d mean_us=%.1f " ..
    "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d bytes=%d\n",
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout, summary.bytes))
end
