//! The portable schema: one `table!` set both backends share. Only portable
//! SQL types are used (Text, BigInt, Integer, Bool, Timestamp): UUIDs and JSON
//! are stored as text, timestamps as UTC without zone at microsecond precision.
//! Each backend's migrations create exactly these tables.

#![allow(missing_docs)]

diesel::table! {
    /// 1-to-1 conversations, unique per tenant and ordered pair of users.
    conversations (id) {
        id -> Text,
        tenant_id -> Text,
        user_one_id -> Text,
        user_two_id -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        last_message_at -> Timestamp,
        last_seq -> BigInt,
    }
}

diesel::table! {
    /// Messages with their receipts and edit/delete marks.
    messages (id) {
        id -> Text,
        tenant_id -> Text,
        conversation_id -> Text,
        seq -> BigInt,
        sender_id -> Text,
        recipient_id -> Text,
        content -> Text,
        related_entity_type -> Nullable<Text>,
        related_entity_id -> Nullable<Text>,
        client_message_id -> Nullable<Text>,
        read_at -> Nullable<Timestamp>,
        delivered_at -> Nullable<Timestamp>,
        edited_at -> Nullable<Timestamp>,
        deleted_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    /// In-app notifications; `status_rank` is 0 unread, 1 read, 2 archived (it sorts).
    notifications (id) {
        id -> Text,
        tenant_id -> Text,
        user_id -> Text,
        title -> Text,
        message -> Text,
        kind -> Text,
        status_rank -> Integer,
        related_entity_type -> Nullable<Text>,
        related_entity_id -> Nullable<Text>,
        push_sent -> Bool,
        push_sent_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    /// The append-only `MessagingAuditLog`; `details` is JSON text.
    messaging_audit_log (id) {
        id -> Text,
        tenant_id -> Text,
        user_id -> Nullable<Text>,
        action -> Text,
        entity_type -> Nullable<Text>,
        entity_id -> Nullable<Text>,
        details -> Text,
        ip_address -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    /// The tenant's directory of users.
    directory_users (tenant_id, user_id) {
        tenant_id -> Text,
        user_id -> Text,
        display_name -> Text,
        role -> Text,
        active -> Bool,
        updated_at -> Timestamp,
        /// The display name folded for search and ordering (`NameKey`;
        /// `COLLATE "C"` on Postgres). NULL for rows written without it (before
        /// the column, or by a node of an older release) until `fill_search_keys`.
        search_key -> Nullable<Text>,
    }
}

diesel::table! {
    /// Per-tenant settings (the messaging feature flag).
    tenant_settings (tenant_id) {
        tenant_id -> Text,
        messaging_enabled -> Bool,
        updated_at -> Timestamp,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    conversations,
    messages,
    notifications,
    messaging_audit_log,
    directory_users,
    tenant_settings,
);
