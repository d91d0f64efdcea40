-- The seed recommended (conversation_id, created_at) for reading a
-- conversation in order. AfriTalk reads it by seq instead (history pages
-- backwards, catch-up forwards, both on the unique (conversation_id, seq)),
-- so no query uses this index, while every send and every first delivery
-- (✓✓, which rewrites the row) wrote an entry into it: 2 of the 19 index
-- entries a message cost, and index maintenance was 42 % of Postgres's time
-- at 5,000 messages/s.
DROP INDEX messages_conversation_created;
