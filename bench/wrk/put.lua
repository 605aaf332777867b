-- PUT /users/{id} with a key and a new username, a random existing id each time. The name
-- starts with the id (user17-3), so no two users ever ask for the same one: no 409s.
dofile("common.lua")

local sent = 0

function request()
  local id = math.random(users)
  sent = sent + 1
  local body = string.format('{"username": "user%d-%d"}', id, sent % 100)
  return wrk.format("PUT", "/users/" .. id, write_headers(), body)
end
