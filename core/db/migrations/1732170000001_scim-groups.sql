-- Up Migration

-- Groups. `resource` holds the SCIM representation without id, meta and members; members live in
-- group_members so that large groups change one row at a time.
CREATE TABLE groups (
  id           uuid PRIMARY KEY,
  display_name text NOT NULL,
  external_id  text,
  resource     jsonb NOT NULL,
  version      bigint NOT NULL DEFAULT 1,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  deleted_at   timestamptz
);
-- displayName is unique among live groups, case-insensitively.
CREATE UNIQUE INDEX groups_display_name_key ON groups (lower(display_name)) WHERE deleted_at IS NULL;
CREATE INDEX groups_external_id_idx ON groups (external_id) WHERE deleted_at IS NULL;

-- Direct members of a group: users or other groups (nested groups).
CREATE TABLE group_members (
  group_id    uuid NOT NULL REFERENCES groups (id),
  member_id   uuid NOT NULL,
  member_type text NOT NULL CHECK (member_type IN ('User', 'Group')),
  display     text,
  added_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (group_id, member_id)
);
CREATE INDEX group_members_member_idx ON group_members (member_id);

-- Lookups that SCIM clients make constantly.
CREATE INDEX users_created_at_idx ON users (created_at) WHERE deleted_at IS NULL;
CREATE INDEX users_updated_at_idx ON users (updated_at) WHERE deleted_at IS NULL;
CREATE INDEX users_resource_gin ON users USING gin (resource jsonb_path_ops);

-- Down Migration
DROP TABLE group_members;
DROP TABLE groups;
DROP INDEX users_created_at_idx;
DROP INDEX users_updated_at_idx;
DROP INDEX users_resource_gin;
