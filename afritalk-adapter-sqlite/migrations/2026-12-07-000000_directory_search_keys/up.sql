-- Directory search (GET …/directory/users): each name's folded form
-- (accents, case and repeated spaces removed, in Rust, so both backends match
-- and order alike). Rows written before this migration are filled in by the
-- store right after the migrations run (`fill_search_keys`); until then they
-- are NULL, which no search lists.
ALTER TABLE directory_users ADD COLUMN search_key TEXT;
-- A tenant's page in name order, and the scan a text search filters.
CREATE INDEX directory_users_by_name ON directory_users (tenant_id, search_key, user_id);
