-- GET /users?limit=20: the first page.
dofile("common.lua")

function request()
  return wrk.format("GET", "/users?limit=20", read_headers())
end
