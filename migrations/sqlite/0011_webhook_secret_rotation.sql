-- A rotated endpoint secret stays valid until `previous_until` (ms): deliveries carry a
-- signature with each, so a receiver can switch to the new secret without missing one.
ALTER TABLE webhook_endpoints ADD COLUMN previous_secret TEXT;
ALTER TABLE webhook_endpoints ADD COLUMN previous_until INTEGER;
