-- Up Migration

-- Group memberships only ever join live resources. Users and groups are soft-deleted (deleted_at
-- keeps a tombstone), so a foreign key alone cannot say "live"; two triggers do, and they hold
-- whatever the application does:
--
-- * A membership can be inserted (or repointed) only while its group and its member are live, as
--   the type it names. The check reads those rows FOR SHARE, which conflicts with every UPDATE of
--   them, the one that marks them deleted included: a deletion in flight makes the insert wait for
--   it and then fail, and an insert in flight makes the deletion wait until the membership has
--   committed, so that the deletion's own clean-up (below) sees and removes it.
-- * Marking a user or group deleted removes its memberships (and a group's own members) in the
--   same transaction.
--
-- The error is a foreign_key_violation (23503), which the gateway answers as a SCIM 400.
CREATE FUNCTION group_members_require_live() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM 1 FROM groups WHERE id = NEW.group_id AND deleted_at IS NULL FOR SHARE;
  IF NOT FOUND THEN
    RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation', MESSAGE = format('group %s does not exist or is deleted', NEW.group_id);
  END IF;
  IF NEW.member_type = 'User' THEN
    PERFORM 1 FROM users WHERE id = NEW.member_id AND deleted_at IS NULL FOR SHARE;
  ELSE
    PERFORM 1 FROM groups WHERE id = NEW.member_id AND deleted_at IS NULL FOR SHARE;
  END IF;
  IF NOT FOUND THEN
    RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation', MESSAGE = format('no live %s with id %s', NEW.member_type, NEW.member_id);
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER group_members_require_live BEFORE INSERT OR UPDATE OF group_id, member_id, member_type ON group_members
  FOR EACH ROW EXECUTE FUNCTION group_members_require_live();

CREATE FUNCTION group_members_drop_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM group_members WHERE member_id = NEW.id;
  IF TG_TABLE_NAME = 'groups' THEN
    DELETE FROM group_members WHERE group_id = NEW.id;
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER users_drop_memberships AFTER UPDATE OF deleted_at ON users
  FOR EACH ROW WHEN (OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL) EXECUTE FUNCTION group_members_drop_deleted();
CREATE TRIGGER groups_drop_memberships AFTER UPDATE OF deleted_at ON groups
  FOR EACH ROW WHEN (OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL) EXECUTE FUNCTION group_members_drop_deleted();

-- Memberships left behind by the race these triggers close are removed, each group's removal
-- recorded in the audit log like any other membership change.
WITH dangling AS (
  DELETE FROM group_members m
   WHERE NOT EXISTS (SELECT 1 FROM groups g WHERE g.id = m.group_id AND g.deleted_at IS NULL)
      OR (m.member_type = 'User' AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = m.member_id AND u.deleted_at IS NULL))
      OR (m.member_type = 'Group' AND NOT EXISTS (SELECT 1 FROM groups g WHERE g.id = m.member_id AND g.deleted_at IS NULL))
  RETURNING m.group_id, m.member_id, m.member_type)
INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after)
SELECT 'migration:1732170000009', 'group.members-pruned', 'Group', d.group_id::text, 'membership of a deleted resource',
       jsonb_build_object('membersRemoved', jsonb_agg(jsonb_build_object('value', d.member_id, 'type', d.member_type) ORDER BY d.member_id))
  FROM dangling d GROUP BY d.group_id;

-- The users an audit event concerns, so that one indexed query gives a user's whole history:
-- the user itself; accounts (resource id "<connector>:<user>"; connector ids hold no colon);
-- grants (their userId); group events through the members they list (created: members;
-- deleted: the members it had; patched, replaced, pruned: membersAdded and membersRemoved).
CREATE FUNCTION audit_event_users(resource_type text, resource_id text, before jsonb, after jsonb)
RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE resource_type
    WHEN 'User' THEN ARRAY[resource_id]
    WHEN 'Account' THEN ARRAY[split_part(resource_id, ':', 2)]
    WHEN 'Grant' THEN array_remove(ARRAY[after->>'userId', before->>'userId'], NULL)
    WHEN 'Group' THEN ARRAY(
      SELECT DISTINCT m->>'value'
        FROM jsonb_array_elements(
               CASE WHEN jsonb_typeof(after->'members') = 'array' THEN after->'members' ELSE '[]' END
               || CASE WHEN jsonb_typeof(before->'members') = 'array' THEN before->'members' ELSE '[]' END
               || CASE WHEN jsonb_typeof(after->'membersAdded') = 'array' THEN after->'membersAdded' ELSE '[]' END
               || CASE WHEN jsonb_typeof(after->'membersRemoved') = 'array' THEN after->'membersRemoved' ELSE '[]' END) AS m
       WHERE jsonb_typeof(m) = 'object' AND m->>'value' IS NOT NULL AND COALESCE(m->>'type', 'User') = 'User')
    ELSE '{}'::text[]
  END
$$;
CREATE INDEX audit_events_users_idx ON audit_events USING gin (audit_event_users(resource_type, resource_id, before, after));

-- Down Migration
DROP INDEX audit_events_users_idx;
DROP FUNCTION audit_event_users(text, text, jsonb, jsonb);
DROP TRIGGER groups_drop_memberships ON groups;
DROP TRIGGER users_drop_memberships ON users;
DROP FUNCTION group_members_drop_deleted();
DROP TRIGGER group_members_require_live ON group_members;
DROP FUNCTION group_members_require_live();
