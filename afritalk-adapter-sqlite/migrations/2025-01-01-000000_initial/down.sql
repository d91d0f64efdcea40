DROP TABLE tenant_settings;
DROP TABLE directory_users;
DROP TABLE messaging_audit_log;
DROP TABLE notifications;
DROP TABLE messages;
DROP TABLE conversations;
