-- Reads the topic's position and part of its history in one step.
-- KEYS: meta, log
-- ARGV: 'since' or 'recent'; for since: epoch, last seq seen, first id wanted, count;
--       for recent: count (newest first)
-- Returns {} when the topic has no meta, else {epoch, seq, now_ms, id, t, event, id, t, ...}.
local meta, log = KEYS[1], KEYS[2]
local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  return {}
end
local seq = redis.call('HGET', meta, 'seq')
local t = redis.call('TIME')
local out = {epoch, seq, tostring(t[1] * 1000 + math.floor(t[2] / 1000))}
local entries = {}
if ARGV[1] == 'since' then
  -- Read only what can be served: same numbering, something missed, and not more than the
  -- history size behind (otherwise the caller must reload anyway).
  local from, last = tonumber(ARGV[3]), tonumber(seq)
  if epoch == ARGV[2] and from < last and from + tonumber(ARGV[5]) >= last then
    entries = redis.call('XRANGE', log, ARGV[4], '+', 'COUNT', ARGV[5])
  end
else
  entries = redis.call('XREVRANGE', log, '+', '-', 'COUNT', ARGV[2])
end
for _, entry in ipairs(entries) do
  -- Fields are stored as t, <ms>, e, <event>.
  local fields = entry[2]
  out[#out + 1] = entry[1]
  out[#out + 1] = fields[2]
  out[#out + 1] = fields[4]
end
return out
