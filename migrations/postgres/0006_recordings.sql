-- Recording downloads: what the file turned out to be once stored, or why it was not.
-- state: pending | ready | failed | refused. path is relative to the recordings folder.
ALTER TABLE recordings ADD COLUMN size_bytes BIGINT;
ALTER TABLE recordings ADD COLUMN sha256 TEXT;
ALTER TABLE recordings ADD COLUMN content_type TEXT;
ALTER TABLE recordings ADD COLUMN path TEXT;
ALTER TABLE recordings ADD COLUMN reason TEXT;
