-- The orgs an outgoing webhook endpoint receives events of: a JSON array of org ids, or ["*"].
-- Endpoints made before this have no recorded scope and keep receiving every org's events.
ALTER TABLE webhook_endpoints ADD COLUMN orgs TEXT NOT NULL DEFAULT '["*"]';
