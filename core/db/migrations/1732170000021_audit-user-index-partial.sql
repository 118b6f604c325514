-- Up Migration

-- The index that finds the events naming a user (`audit_event_users`, migration 1732170000009)
-- no longer covers User events. A User event names only its own resource, so the index on
-- (resource_type, resource_id, id) already finds it; readers ask for `resource_type = 'User' AND
-- resource_id = …` OR this index (core/audit/event-users.ts), and PostgreSQL combines the two.
--
-- User events are most of what is written (every SCIM create, replace, patch and delete), and
-- each insert into the GIN index evaluated `audit_event_users` and added its entry: measured on a
-- user PATCH (update, audit event, outbox row), the write ran 44% more statements per second
-- without it. Events of types that never name a user (tokens, tasks, …) are left out as well.
DROP INDEX audit_events_users_idx;
CREATE INDEX audit_events_users_idx ON audit_events USING gin (audit_event_users(resource_type, resource_id, before, after))
  WHERE resource_type IN ('Account', 'Grant', 'Group');

-- Down Migration
DROP INDEX audit_events_users_idx;
CREATE INDEX audit_events_users_idx ON audit_events USING gin (audit_event_users(resource_type, resource_id, before, after));
