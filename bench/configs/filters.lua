-- make bench, gateway-filters: random user numbers (uin) and promotion tags (adtag).
-- The requests are formatted once in init() and cycled, so that wrk spends no more CPU
-- per request than on the plain runs (it shares the machine with the proxy).
-- FIRST/COUNT must match the pack file compare.sh generates (bench-users.txt).
local FIRST, COUNT, N = 10001, 100000, 20000
local tags = { "wechat", "wechat", "qzone", "banner", "unknown" }
local reqs, i = {}, 0

function init(args)
  math.randomseed(os.time() + (tonumber(tostring({}):sub(8)) or 0))
  for k = 1, N do
    local uin = FIRST + math.random(0, COUNT - 1)
    local tag = tags[math.random(1, #tags)]
    reqs[k] = wrk.format("GET", "/info?uin=" .. uin .. "&adtag=" .. tag)
  end
end

function request()
  i = i % N + 1
  return reqs[i]
end

-- the tail beyond wrk's --latency table (compare.sh reads this line): microseconds
function done(summary, latency, requests)
  io.write(string.format("tail p99.9 %d p99.99 %d max %d\n", latency:percentile(99.9), latency:percentile(99.99), latency.max))
end
