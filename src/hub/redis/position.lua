-- The topic's epoch and last sequence number, numbering it from 0 if it has none yet (so a
-- subscriber starting now can recover the first event with `since`).
-- KEYS: meta, log. ARGV: epoch to use if the topic has none, meta ttl ms
local meta, log = KEYS[1], KEYS[2]
local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  redis.call('DEL', log)
  epoch = ARGV[1]
  redis.call('HSET', meta, 'epoch', epoch, 'seq', 0)
end
redis.call('PEXPIRE', meta, ARGV[2])
return {epoch, redis.call('HGET', meta, 'seq')}
