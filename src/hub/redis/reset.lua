-- Gives a topic a new epoch and an empty history, and tells every instance. Used when an event
-- of the topic could not be published: it was never numbered, so history would look whole
-- without it; with a new epoch, every subscriber reloads a snapshot instead.
-- KEYS: meta, log. ARGV: new epoch, meta ttl ms, live channel, topic
local meta, log = KEYS[1], KEYS[2]
redis.call('DEL', log)
redis.call('HSET', meta, 'epoch', ARGV[1], 'seq', 0)
redis.call('PEXPIRE', meta, ARGV[2])
-- A live message with no event: see wire::is_reset.
redis.call('PUBLISH', ARGV[3], cjson.encode({ARGV[4], ARGV[1], '0'}) .. '\n')
return 1
