-- Shared by every scenario. Arguments after wrk's `--`: the number of users (ids 1..N),
-- the API key, and a token unique to this run (so created usernames never collide).
-- At the end it prints one line, BENCH_JSON {...}, that bench/run.py reads.

users, key, run_token = 1000, "", "run"
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end

function init(args)
  users = tonumber(args[1])
  key = args[2]
  run_token = args[3]
  math.randomseed(os.time() * 100 + thread_id)
end

-- Reads need the key too (users:read); the peers, whose reads are public, ignore it.
read_headers = function()
  return { ["Authorization"] = "Bearer " .. key }
end

write_headers = function()
  return { ["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json" }
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"mean_us": %.1f, "max_us": %d, "errors": {"connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, latency.max, errors.connect, errors.read, errors.write, errors.status,
    errors.timeout))
end
