-- Up Migration

-- The audit chain is linked after commit, in batches, instead of inside every writing transaction.
--
-- Until now a BEFORE INSERT trigger took a lock held until the writer committed, read the chain
-- head and hashed the event: every transaction that wrote an audit event (every SCIM write, grant,
-- token change…) waited for the previous one to commit. Now writers insert plain rows without any
-- lock (id from the sequence, chain columns NULL) and a chainer links committed events afterwards:
-- `audit_events_chain_pending` below, called by a loop in the gateway and in the worker (see
-- core/audit/chainer.ts) and by the verifier before it verifies.
--
-- Ids are taken when an event is written, so they commit out of order; the chain's order is
-- `chain_seq`, the position the chainer gives an event when it links it. The chainer runs under a
-- lock of its own, so positions are given in commit order of the chainer's batches, never twice,
-- and without gaps. The hash of an event is computed exactly as before (canonical form
-- `audit_events:v1`, the event's id included; its position is not part of it: the links are what
-- fix the order), so events chained before this migration verify unchanged.
ALTER TABLE audit_events ADD COLUMN chain_seq bigint;
ALTER TABLE audit_chain_head ADD COLUMN last_seq bigint;

-- The events already there were chained in id order: that is their position.
ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only;
UPDATE audit_events e SET chain_seq = o.seq
  FROM (SELECT id, row_number() OVER (ORDER BY id) AS seq FROM audit_events) o
 WHERE e.id = o.id;
ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only;
UPDATE audit_chain_head SET last_seq = (SELECT max(chain_seq) FROM audit_events);

ALTER TABLE audit_events ALTER COLUMN hash DROP NOT NULL;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_chained_whole
  CHECK ((chain_seq IS NULL AND hash IS NULL AND prev_hash IS NULL) OR (chain_seq IS NOT NULL AND hash IS NOT NULL));
-- The chain in order (the verifier walks it), and the events still to be linked (the chainer's
-- work list; it stays small, as events leave it within a second or so of their commit).
CREATE UNIQUE INDEX audit_events_chain_seq_key ON audit_events (chain_seq) WHERE chain_seq IS NOT NULL;
CREATE INDEX audit_events_unchained_idx ON audit_events (id) WHERE chain_seq IS NULL;

-- Writing an event: an id from the sequence (a caller-supplied one is overridden) and no chain
-- columns (a writer cannot place its event in the chain). No lock, no read of the head.
DROP TRIGGER audit_events_chain ON audit_events;
DROP FUNCTION audit_events_chain();
CREATE FUNCTION audit_events_record() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.id := nextval('audit_events_id_seq'::regclass);
  NEW.chain_seq := NULL;
  NEW.prev_hash := NULL;
  NEW.hash := NULL;
  RETURN NEW;
END
$$;
CREATE TRIGGER audit_events_record BEFORE INSERT ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_record();

-- Still append-only: UPDATE, DELETE and TRUNCATE are refused, with one exception, the chainer's
-- one-time fill of the chain columns of an event not yet chained. Everything else in the row must
-- stay exactly as it was (compared as text, so that even a jsonb number written differently, 1.5
-- for 1.50, counts as a change), and a chained event can never be updated again.
CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND TG_LEVEL = 'ROW' THEN
    IF OLD.chain_seq IS NULL AND OLD.prev_hash IS NULL AND OLD.hash IS NULL
       AND NEW.chain_seq IS NOT NULL AND NEW.hash IS NOT NULL
       AND (to_jsonb(NEW) - ARRAY['chain_seq', 'prev_hash', 'hash'])::text = (to_jsonb(OLD) - ARRAY['chain_seq', 'prev_hash', 'hash'])::text THEN
      RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_events is append-only (only the chain columns of an event not yet chained can be filled in, once)';
  END IF;
  RAISE EXCEPTION 'audit_events is append-only';
END
$$;

-- The chainer: links up to `max_events` committed, unchained events (in id order, so that the
-- events of one transaction stay in the order they were written) after the head, and moves the
-- head, all in the caller's transaction (one statement when called on its own: it is short, and
-- an interrupted call changes nothing). Only one chainer works at a time: the advisory lock is
-- held until the caller's transaction ends. With `wait` false a call that finds the lock taken
-- returns NULL at once (another chainer is at work and will take these events too); with `wait`
-- true it waits for it, then links what is left. Returns the number of events linked.
--
-- The head is read FOR UPDATE: a REPEATABLE READ or SERIALIZABLE caller whose snapshot predates
-- the last batch fails with a serialization error instead of forking the chain.
CREATE FUNCTION audit_events_chain_pending(max_events integer DEFAULT 1000, wait boolean DEFAULT false) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  head audit_chain_head%ROWTYPE;
  e audit_events%ROWTYPE;
  prev bytea;
  seq bigint;
  ids bigint[] := '{}';
  seqs bigint[] := '{}';
  prevs bytea[] := '{}';
  hashes bytea[] := '{}';
BEGIN
  IF wait THEN
    PERFORM pg_advisory_xact_lock(5204970010001);
  ELSIF NOT pg_try_advisory_xact_lock(5204970010001) THEN
    RETURN NULL;
  END IF;
  SELECT * INTO head FROM audit_chain_head FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'audit_chain_head is missing: the audit chain cannot be extended';
  END IF;
  prev := head.last_hash;
  seq := COALESCE(head.last_seq, 0);
  -- Each hash depends on the one before, so they are computed one by one; the rows are then
  -- updated in one statement.
  FOR e IN SELECT * FROM audit_events WHERE chain_seq IS NULL ORDER BY id LIMIT max_events LOOP
    seq := seq + 1;
    ids := ids || e.id;
    seqs := seqs || seq;
    prevs := prevs || prev;
    prev := sha256(COALESCE(prev, ''::bytea) || audit_events_canonical(e.id, e.at, e.actor, e.action,
              e.resource_type, e.resource_id, e.reason, e.before, e.after));
    hashes := hashes || prev;
  END LOOP;
  IF cardinality(ids) = 0 THEN
    RETURN 0;
  END IF;
  UPDATE audit_events a
     SET chain_seq = u.seq, prev_hash = u.prev, hash = u.hash
    FROM unnest(ids, seqs, prevs, hashes) AS u(id, seq, prev, hash)
   WHERE a.id = u.id;
  UPDATE audit_chain_head SET last_id = ids[cardinality(ids)], last_hash = prev, last_seq = seq;
  RETURN cardinality(ids);
END
$$;

-- Down Migration

-- The earlier design chains in id order inside each writer's transaction: every event is linked
-- again in id order (this rewrites the hashes of events that were chained out of id order, and
-- of all after them; a hash recorded outside the database before this point may no longer match).
DROP FUNCTION audit_events_chain_pending(integer, boolean);
CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_events is append-only';
END
$$;
DROP TRIGGER audit_events_record ON audit_events;
DROP FUNCTION audit_events_record();
DROP INDEX audit_events_unchained_idx;
DROP INDEX audit_events_chain_seq_key;
ALTER TABLE audit_events DROP CONSTRAINT audit_events_chained_whole;

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
  UPDATE audit_chain_head SET last_id = prev_id, last_hash = prev;
END
$$;
ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only;
ALTER TABLE audit_events ALTER COLUMN hash SET NOT NULL;
ALTER TABLE audit_events DROP COLUMN chain_seq;
ALTER TABLE audit_chain_head DROP COLUMN last_seq;

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
