-- POST /users with a key and a username no one has: the run's token, the thread, a count.
dofile("common.lua")

local sent = 0

function request()
  sent = sent + 1
  local body = string.format('{"username": "p%s-%d-%d"}', run_token, thread_id, sent)
  return wrk.format("POST", "/users", write_headers(), body)
end
