-- Tokens the model used, per UTC day, counted for the chat budgets: per session, per widget
-- site key and for all chat. A run adds its usage when it ends, in the transaction that stores
-- its answer; a new message reads today's three counts.
CREATE TABLE chat_usage (
    -- session | site | all
    scope  TEXT NOT NULL,
    -- the session id, the site key, or '' for all
    key    TEXT NOT NULL,
    -- days since 1970-01-01, UTC
    day    BIGINT NOT NULL,
    tokens BIGINT NOT NULL,
    PRIMARY KEY (scope, key, day)
);
