-- As on Postgres: the conversation list reads each side of the pair by user
-- and sorts, so the "latest" indexes only cost every send two index updates.
-- The pair index already leads with tenant and user_one.
DROP INDEX conversations_user_one_latest;
DROP INDEX conversations_user_two_latest;
CREATE INDEX conversations_user_two ON conversations (tenant_id, user_two_id);
