-- Up Migration

-- Tamper-evident audit log: every event carries the SHA-256 of its predecessor's hash followed by
-- its own canonical bytes, so changing, removing or reordering an event breaks the chain from that
-- event on (core/audit/chain.ts verifies it). Writers keep inserting plain rows: a trigger fills
-- in id, prev_hash and hash.
ALTER TABLE audit_events ADD COLUMN prev_hash bytea, ADD COLUMN hash bytea;

-- The canonical bytes of an event. Every text field is written as <length>:<text>, or ~ for NULL,
-- so no content can imitate a separator; `at` is UTC with microseconds (the full precision of
-- timestamptz) whatever the session's TimeZone; jsonb prints deterministically. The verifier in
-- core/audit/chain.ts carries its own copy of this expression (it must not trust a function
-- stored in the database it checks): change both together, under a new version tag.
CREATE FUNCTION audit_events_canonical(
  id bigint, at timestamptz, actor text, action text, resource_type text, resource_id text,
  reason text, before jsonb, after jsonb
) RETURNS bytea LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT convert_to(
    'audit_events:v1'
    || '|' || id::text
    || '|' || to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    || '|' || COALESCE(length(actor)::text || ':' || actor, '~')
    || '|' || COALESCE(length(action)::text || ':' || action, '~')
    || '|' || COALESCE(length(resource_type)::text || ':' || resource_type, '~')
    || '|' || COALESCE(length(resource_id)::text || ':' || resource_id, '~')
    || '|' || COALESCE(length(reason)::text || ':' || reason, '~')
    || '|' || COALESCE(length(before::text)::text || ':' || before::text, '~')
    || '|' || COALESCE(length(after::text)::text || ':' || after::text, '~'),
    'UTF8')
$$;

-- The id and hash of the last event. Reading it with FOR UPDATE, rather than reading the event
-- with the greatest id, matters under REPEATABLE READ and SERIALIZABLE: a transaction whose
-- snapshot predates the last committed event fails with a serialization error (and can be
-- retried) instead of silently forking the chain from an event it cannot see. It also lets the
-- verifier notice events removed from the end of the log.
CREATE TABLE audit_chain_head (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  last_id   bigint,
  last_hash bytea
);
CREATE FUNCTION audit_chain_head_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_chain_head holds the end of the audit chain and cannot be deleted';
END
$$;
CREATE TRIGGER audit_chain_head_guard BEFORE DELETE OR TRUNCATE ON audit_chain_head
  FOR EACH STATEMENT EXECUTE FUNCTION audit_chain_head_guard();

-- Chain the events already there, in id order (the append-only trigger refuses UPDATE, so it is
-- off for the length of this transaction, which holds an exclusive lock on the table).
ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only;
DO $$
DECLARE
  e audit_events%ROWTYPE;
  prev bytea := NULL;
  prev_id bigint := NULL;
BEGIN
  FOR e IN SELECT * FROM audit_events ORDER BY id LOOP
    UPDATE audit_events
       SET prev_hash = prev,
           hash = sha256(COALESCE(prev, ''::bytea) || audit_events_canonical(e.id, e.at, e.actor, e.action,
                    e.resource_type, e.resource_id, e.reason, e.before, e.after))
     WHERE id = e.id
     RETURNING hash INTO prev;
    prev_id := e.id;
  END LOOP;
  INSERT INTO audit_chain_head (last_id, last_hash) VALUES (prev_id, prev);
END
$$;
ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only;
ALTER TABLE audit_events ALTER COLUMN hash SET NOT NULL;

-- Ids come from the chain trigger, inside its lock, so that id order is chain order; a default
-- evaluated before the trigger would only waste a sequence number per insert.
ALTER TABLE audit_events ALTER COLUMN id DROP DEFAULT;

-- Appends an event to the chain. The transaction-scoped advisory lock serializes every
-- transaction that writes audit events from here until it commits, so the predecessor read below
-- is the last committed event and no other event can be chained between it and this one. The id
-- is taken inside the lock too: ids therefore commit in increasing order, which also makes
-- `id > n` paging gap-free for readers that follow the log. A caller-supplied id is overridden.
-- This must stay the last BEFORE INSERT trigger on the table (triggers fire in name order), so
-- that nothing changes the row after it is hashed.
CREATE FUNCTION audit_events_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  head audit_chain_head%ROWTYPE;
BEGIN
  PERFORM pg_advisory_xact_lock(5204970010001);
  SELECT * INTO head FROM audit_chain_head FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'audit_chain_head is missing: the audit chain cannot be extended';
  END IF;
  NEW.id := nextval('audit_events_id_seq'::regclass);
  NEW.prev_hash := head.last_hash;
  NEW.hash := sha256(COALESCE(NEW.prev_hash, ''::bytea) || audit_events_canonical(NEW.id, NEW.at, NEW.actor,
                NEW.action, NEW.resource_type, NEW.resource_id, NEW.reason, NEW.before, NEW.after));
  UPDATE audit_chain_head SET last_id = NEW.id, last_hash = NEW.hash;
  RETURN NEW;
END
$$;
CREATE TRIGGER audit_events_chain BEFORE INSERT ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_chain();

-- TRUNCATE skips row triggers; refuse it as UPDATE and DELETE are refused.
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- Down Migration
DROP TRIGGER audit_events_no_truncate ON audit_events;
DROP TRIGGER audit_events_chain ON audit_events;
DROP FUNCTION audit_events_chain();
ALTER TABLE audit_events ALTER COLUMN id SET DEFAULT nextval('audit_events_id_seq'::regclass);
DROP TABLE audit_chain_head;
DROP FUNCTION audit_chain_head_guard();
DROP FUNCTION audit_events_canonical(bigint, timestamptz, text, text, text, text, text, jsonb, jsonb);
ALTER TABLE audit_events DROP COLUMN prev_hash, DROP COLUMN hash;
