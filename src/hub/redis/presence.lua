-- Watchers of a topic: a sorted set (member: watcher id, score: expiry in ms) and a hash
-- (watcher id -> watcher JSON). Expired watchers are dropped on every call, and both keys
-- expire with their last watcher, so a crashed instance leaves nothing behind.
-- KEYS: watchers (zset), cards (hash)
-- ARGV: 'set', id, json, ttl ms | 'remove', id | 'list'
local z, h = KEYS[1], KEYS[2]
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local gone = redis.call('ZRANGEBYSCORE', z, '-inf', now)
for _, id in ipairs(gone) do
  redis.call('ZREM', z, id)
  redis.call('HDEL', h, id)
end
if ARGV[1] == 'set' then
  redis.call('ZADD', z, now + tonumber(ARGV[4]), ARGV[2])
  -- A refresh keeps the watcher as first recorded (its `since` above all).
  redis.call('HSETNX', h, ARGV[2], ARGV[3])
elseif ARGV[1] == 'remove' then
  redis.call('ZREM', z, ARGV[2])
  redis.call('HDEL', h, ARGV[2])
end
local last = redis.call('ZRANGE', z, -1, -1, 'WITHSCORES')
if #last == 0 then
  redis.call('DEL', z, h)
  return {}
end
redis.call('PEXPIREAT', z, last[2])
redis.call('PEXPIREAT', h, last[2])
if ARGV[1] ~= 'list' then
  return {}
end
-- HGETALL rather than HMGET: unpack() would fail past a few thousand watchers.
local all = redis.call('HGETALL', h)
local cards = {}
for i = 1, #all, 2 do
  cards[all[i]] = all[i + 1]
end
local out = {}
for _, id in ipairs(redis.call('ZRANGE', z, 0, -1)) do
  if cards[id] then
    out[#out + 1] = cards[id]
  end
end
return out
