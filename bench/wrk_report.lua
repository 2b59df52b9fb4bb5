-- wrk script for the benchmarks: prints wrk's summary as one JSON line the harness parses.
-- Headers (Authorization, Accept) are given with wrk's -H flag, so no per-request Lua runs.
-- WRK_DELAY_MS (optional) makes each connection wait that long before its next request: a
-- fixed offered load instead of as fast as the server answers (latency excludes the wait).
local delay_ms = tonumber(os.getenv("WRK_DELAY_MS") or "0") or 0
if delay_ms > 0 then
  delay = function() return delay_ms end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "bytes": %d, "duration_us": %d, "connect": %d, "read": %d, '
      .. '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.bytes, summary.duration, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
