-- The list endpoints read a page at a time in creation order, the rows after a cursor
-- (created_at, id): each list has an index in that order, so a page is an index range scan of
-- its own rows, however deep in the list it starts (no sort of the whole table per page).

-- GET /api/v0/users (admins).
CREATE INDEX users_created_at_id_idx ON users (created_at, id);
-- GET /api/v0/workspaces: an admin's (everyone's) and a member's (their own).
CREATE INDEX workspaces_created_at_id_idx ON workspaces (created_at, id);
CREATE INDEX workspaces_owner_created_at_id_idx ON workspaces (owner_id, created_at, id);
-- GET /api/v0/api-keys: the caller's API keys (session tokens share the table, not the list).
CREATE INDEX api_keys_user_created_at_id_idx ON api_keys (user_id, created_at, id) WHERE kind = 'api_key';
