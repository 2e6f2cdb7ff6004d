-- The assistant's display name (VAPI's assistant.name), for boards that would otherwise show an id.
ALTER TABLE calls ADD COLUMN assistant_name TEXT;
