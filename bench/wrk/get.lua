-- GET /users/{id}, a random existing id each time.
dofile("common.lua")

function request()
  return wrk.format("GET", "/users/" .. math.random(users), read_headers())
end
