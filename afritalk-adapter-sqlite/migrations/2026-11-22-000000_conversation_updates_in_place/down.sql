DROP INDEX conversations_user_two;
CREATE INDEX conversations_user_one_latest
    ON conversations (tenant_id, user_one_id, last_message_at DESC, id DESC);
CREATE INDEX conversations_user_two_latest
    ON conversations (tenant_id, user_two_id, last_message_at DESC, id DESC);
