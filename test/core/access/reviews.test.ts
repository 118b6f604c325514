/**
 * The access review model on PostgreSQL alone (core/access/reviews.ts, no Temporal): items and
 * reviewers generated once however often the steps repeat, decisions refused past the due date
 * (the campaign's policy decides then), the due date's policy applied once, and the report's
 * CSV records quoting what a spreadsheet would read as a formula.
 */
import { randomUUID } from 'node:crypto';
import t from 'tap';
import { createTestDatabase } from '../../helpers/db.js';
import {
  applyDueDate,
  createCampaign,
  decideItem,
  generateItems,
  listItems,
  markGenerated,
  reportCsvRecord,
  reportItems,
  resolveCampaign,
  resolveReviewers,
} from '../../../core/access/reviews.js';

const ENTERPRISE = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';

t.test('generation, deadlines and the due date, each applied once', async (t) => {
  const { db } = await createTestDatabase(t);
  const user = async (name: string, manager?: string) => {
    const id = randomUUID();
    await db.query('INSERT INTO users (id, user_name, resource) VALUES ($1, $2, $3)', [id, name, JSON.stringify({ userName: name, ...(manager ? { [ENTERPRISE]: { manager: { value: manager } } } : {}) })]);
    return id;
  };
  const boss = await user('boss@example.com');
  const amy = await user('=amy@example.com', boss);
  const bo = await user('bo@example.com', boss);
  await db.query(`INSERT INTO connectors (id, type) VALUES ('app', 'scim')`);
  const ent = randomUUID();
  await db.query(`INSERT INTO entitlements (id, connector_id, name, target) VALUES ($1, 'app', 'admins', '{}')`, [ent]);
  for (const u of [amy, bo, boss]) await db.query(`INSERT INTO grants (id, user_id, entitlement_id, reason) VALUES ($1, $2, $3, 'manual')`, [randomUUID(), u, ent]);

  const spec = await resolveCampaign(db, { name: 'core', scope: { connectors: ['app'] }, reviewers: { manager: 1 }, durationSeconds: 3600, onUnreviewed: { action: 'revoke' } });
  const id = await createCampaign(db, spec, 'test');
  t.equal(await generateItems(db, id), 3);
  t.equal(await resolveReviewers(db, id), 3);
  // A step repeated after a crash changes nothing.
  await db.query('UPDATE review_campaigns SET generated_at = NULL WHERE id = $1', [id]);
  t.equal(await generateItems(db, id), 3, 'generated once');
  t.equal(await resolveReviewers(db, id), 0, 'reviewers resolved once');
  await markGenerated(db, id);
  await markGenerated(db, id);
  const { rows: opened } = await db.query(`SELECT 1 FROM audit_events WHERE action = 'access-review.opened' AND resource_id = $1`, [id]);
  t.equal(opened.length, 1, 'opened once');

  const items = await listItems(db, id);
  const of = (name: string) => items.find((i) => i.userName === name)!;
  t.same(of('boss@example.com').reviewerIds, [], 'nobody reviews the manager of everyone: no manager, no fallback');
  const me = { userId: boss, userName: 'boss@example.com' };
  t.match(await decideItem(db, { itemId: of('bo@example.com').id, reviewer: me, decision: 'keep' }), { ok: true, item: { status: 'kept' } });

  // Past the due date, reviewers may no longer decide: the policy does.
  await db.query(`UPDATE review_campaigns SET due_at = now() - interval '1 second' WHERE id = $1`, [id]);
  t.match(await decideItem(db, { itemId: of('=amy@example.com').id, reviewer: me, decision: 'keep' }), { ok: false, status: 409, message: "the access review's due date has passed" });
  t.match(await decideItem(db, { itemId: of('bo@example.com').id, reviewer: me, decision: 'keep' }), { ok: true }, 'a repeat of a decision made in time still answers the same');

  const first = await applyDueDate(db, id);
  t.match(first, { status: 'closed', revoked: 2, kept: 0 });
  const again = await applyDueDate(db, id);
  t.match(again, { status: 'closed', revoked: 0, kept: 0 }, 'applied once');
  const { rows: ended } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_events WHERE action = 'grant.ended'`);
  t.equal(ended[0]!.n, 2, "amy's and the boss's grants ended, once each");
  const { rows: queued } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM outbox WHERE topic = 'user.changed' AND aggregate_id = ANY($1::text[])`, [[amy, boss]]);
  t.equal(queued[0]!.n, 2, 'and their userSync is asked to take the access away');

  const report = await reportItems(db, id);
  const amyRow = report.find((r) => r.userId === amy)!;
  t.match(amyRow, { decision: 'revoke', decidedBy: 'access review core', comment: 'not reviewed by the due date', refusals: [{ actor: 'boss@example.com', refusal: "the access review's due date has passed" }] });
  t.match(reportCsvRecord(amyRow), /^[0-9a-f-]{36},'=amy@example.com,/, 'a userName starting with = is quoted as text in the CSV');
});
