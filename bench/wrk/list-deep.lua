-- GET /users?limit=20&cursor=N-40: a page near the end, which should cost what the first does.
dofile("common.lua")

function request()
  return wrk.format("GET", "/users?limit=20&cursor=" .. math.max(users - 40, 0), read_headers())
end
