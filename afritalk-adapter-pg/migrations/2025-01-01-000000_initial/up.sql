-- AfriTalk storage, Postgres flavour of the portable schema
-- (afritalk-adapter-sql/src/schema.rs). Ids are UUID text, timestamps are UTC
-- without zone at microsecond precision, JSON is text.

CREATE TABLE conversations (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    user_one_id     TEXT NOT NULL,
    user_two_id     TEXT NOT NULL,
    created_at      TIMESTAMP NOT NULL,
    updated_at      TIMESTAMP NOT NULL,
    last_message_at TIMESTAMP NOT NULL,
    last_seq        BIGINT NOT NULL,
    CHECK (user_one_id < user_two_id)
);
-- The seed's (tenantId, userOneId, userTwoId): one conversation per pair; the send upsert's key.
CREATE UNIQUE INDEX conversations_pair ON conversations (tenant_id, user_one_id, user_two_id);
-- Conversation lists: a user's conversations, latest first, from either side of the pair.
CREATE INDEX conversations_user_one_latest
    ON conversations (tenant_id, user_one_id, last_message_at DESC, id DESC);
CREATE INDEX conversations_user_two_latest
    ON conversations (tenant_id, user_two_id, last_message_at DESC, id DESC);

CREATE TABLE messages (
    id                  TEXT PRIMARY KEY,
    tenant_id           TEXT NOT NULL,
    conversation_id     TEXT NOT NULL REFERENCES conversations (id),
    seq                 BIGINT NOT NULL,
    sender_id           TEXT NOT NULL,
    recipient_id        TEXT NOT NULL,
    content             TEXT NOT NULL,
    related_entity_type TEXT,
    related_entity_id   TEXT,
    client_message_id   TEXT,
    read_at             TIMESTAMP,
    delivered_at        TIMESTAMP,
    edited_at           TIMESTAMP,
    deleted_at          TIMESTAMP,
    created_at          TIMESTAMP NOT NULL,
    updated_at          TIMESTAMP NOT NULL,
    CHECK ((related_entity_type IS NULL) = (related_entity_id IS NULL))
);
-- History and catch-up by seq; also makes seq unique per conversation.
CREATE UNIQUE INDEX messages_conversation_seq ON messages (conversation_id, seq);
-- The seed's (conversationId, createdAt).
CREATE INDEX messages_conversation_created ON messages (conversation_id, created_at);
-- Idempotent sends: one message per tenant + sender + clientMessageId (NULLs are distinct).
CREATE UNIQUE INDEX messages_client_id ON messages (tenant_id, sender_id, client_message_id);
-- Unread counts per recipient (and per conversation of a recipient).
CREATE INDEX messages_unread ON messages (tenant_id, recipient_id, conversation_id)
    WHERE read_at IS NULL AND deleted_at IS NULL;
-- changes_since: a user's sent and received messages by (updated_at, id).
CREATE INDEX messages_sender_changes ON messages (tenant_id, sender_id, updated_at, id);
CREATE INDEX messages_recipient_changes ON messages (tenant_id, recipient_id, updated_at, id);

CREATE TABLE notifications (
    id                  TEXT PRIMARY KEY,
    tenant_id           TEXT NOT NULL,
    user_id             TEXT NOT NULL,
    title               TEXT NOT NULL,
    message             TEXT NOT NULL,
    kind                TEXT NOT NULL,
    status_rank         INTEGER NOT NULL CHECK (status_rank IN (0, 1, 2)),
    related_entity_type TEXT,
    related_entity_id   TEXT,
    push_sent           BOOLEAN NOT NULL,
    push_sent_at        TIMESTAMP,
    created_at          TIMESTAMP NOT NULL,
    CHECK ((related_entity_type IS NULL) = (related_entity_id IS NULL))
);
-- Unread first (rank 0 unread, 1 read, 2 archived), then newest first.
CREATE INDEX notifications_by_user
    ON notifications (tenant_id, user_id, status_rank, created_at DESC, id DESC);

CREATE TABLE messaging_audit_log (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    user_id     TEXT,
    action      TEXT NOT NULL,
    entity_type TEXT,
    entity_id   TEXT,
    details     TEXT NOT NULL,
    ip_address  TEXT,
    created_at  TIMESTAMP NOT NULL
);
-- Audit queries: by tenant, newest first.
CREATE INDEX audit_by_tenant_time ON messaging_audit_log (tenant_id, created_at DESC, id DESC);
-- Retention purge across tenants.
CREATE INDEX audit_by_time ON messaging_audit_log (created_at);

CREATE TABLE directory_users (
    tenant_id    TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    display_name TEXT NOT NULL,
    role         TEXT NOT NULL,
    active       BOOLEAN NOT NULL,
    updated_at   TIMESTAMP NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);

CREATE TABLE tenant_settings (
    tenant_id         TEXT PRIMARY KEY,
    messaging_enabled BOOLEAN NOT NULL,
    updated_at        TIMESTAMP NOT NULL
);
