DROP INDEX directory_users_by_name;
ALTER TABLE directory_users DROP COLUMN search_key;
