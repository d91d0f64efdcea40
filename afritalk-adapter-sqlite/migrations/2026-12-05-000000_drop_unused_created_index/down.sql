CREATE INDEX messages_conversation_created ON messages (conversation_id, created_at);
