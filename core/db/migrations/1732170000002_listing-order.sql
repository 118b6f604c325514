-- Up Migration

-- SCIM lists are ordered by creation, then id, for stable paging; these indexes serve that order.
DROP INDEX users_created_at_idx;
CREATE INDEX users_created_at_id_idx ON users (created_at, id) WHERE deleted_at IS NULL;
CREATE INDEX groups_created_at_id_idx ON groups (created_at, id) WHERE deleted_at IS NULL;

-- Down Migration
DROP INDEX groups_created_at_id_idx;
DROP INDEX users_created_at_id_idx;
CREATE INDEX users_created_at_idx ON users (created_at) WHERE deleted_at IS NULL;
