-- Every send moves its conversation's last_message_at. With that column in
-- the two "latest" indexes, each send wrote a new version of the row plus 4
-- index entries, and the dead versions piled up wherever autovacuum lags.
-- The conversation list never read those indexes in order: its
-- "user_one = u OR user_two = u" is a bitmap OR of both sides, then a sort of
-- the user's conversations. Indexing the sides alone serves it the same way
-- (the pair index already leads with tenant and user_one), and lets Postgres
-- update the row in place (a HOT update: no index entry, dead versions pruned
-- on the page), for which the table keeps 30 % of each page free.
DROP INDEX conversations_user_one_latest;
DROP INDEX conversations_user_two_latest;
CREATE INDEX conversations_user_two ON conversations (tenant_id, user_two_id);
ALTER TABLE conversations SET (fillfactor = 70);
