-- Numbers, stores and broadcasts one event, atomically, so that live order is sequence order.
-- KEYS: meta (hash: epoch, seq), log (stream of the topic's history)
-- ARGV: epoch to use if the topic has none, history size, history age ms, meta ttl ms,
--       live channel, topic, event (JSON)
local meta, log = KEYS[1], KEYS[2]
local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  -- No meta: a new topic, or its numbering was lost (expiry, eviction, restart). Whatever
  -- history is left belongs to the old numbering.
  redis.call('DEL', log)
  epoch = ARGV[1]
  redis.call('HSET', meta, 'epoch', epoch, 'seq', 0)
end
redis.call('HINCRBY', meta, 'seq', 1)
-- Read back as a string: Lua numbers print in %.14g.
local seq = redis.call('HGET', meta, 'seq')
redis.call('PEXPIRE', meta, ARGV[4])
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('XADD', log, 'MAXLEN', '~', ARGV[2], seq .. '-0', 't', now, 'e', ARGV[7])
redis.call('PEXPIRE', log, ARGV[3])
redis.call('PUBLISH', ARGV[5], cjson.encode({ARGV[6], epoch, seq}) .. '\n' .. ARGV[7])
return {epoch, seq}
