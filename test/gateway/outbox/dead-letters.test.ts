/**
 * No accepted write is stuck silently: a long userName is provisioned (its visibility values are
 * bounded), and a row Temporal never accepts is dead-lettered after OUTBOX_MAX_ATTEMPTS tries,
 * shown by the admin API and /readyz, audited, and delivered once re-driven.
 */
import t from 'tap';
import { createTestDatabase } from '../../helpers/db.js';
import { startTestGateway, userBody } from '../../helpers/gateway.js';
import { eventually, testTemporal } from '../../helpers/temporal.js';
import { Directory } from '../../../core/directory/store.js';
import { SchemaRegistry } from '../../../core/scim/schemas.js';
import { notifyUserChanged, userNameSearchAttribute, userSyncWorkflowId } from '../../../workflows/client.js';
import { VISIBILITY_VALUE_MAX_BYTES } from '../../../workflows/bounded.js';

const temporal = await testTemporal(t);
const database = await createTestDatabase(t);
await temporal.startWorker(database.newPool());

t.test('the longest userName SCIM accepts, in multi-byte characters, is provisioned', async (t) => {
  const gw = await startTestGateway(t, { database, temporalAddress: temporal.address, taskQueue: temporal.taskQueue });
  // 1,024 bytes, the SCIM limit: its JSON form is longer than the visibility bound, so it is cut.
  const userName = 'é😀中'.repeat(113) + 'abcdefg';
  t.equal(Buffer.byteLength(userName), 1024);
  const res = await gw.scim({ method: 'POST', url: '/scim/v2/Users', payload: userBody(userName) });
  t.equal(res.statusCode, 201, res.body);
  const user = res.json<{ id: string }>();
  const tooLong = await gw.scim({ method: 'POST', url: '/scim/v2/Users', payload: userBody('é😀中'.repeat(333) + 'abc') });
  t.equal(tooLong.statusCode, 400, 'a 3,000-byte userName is refused at the door, not accepted and stranded');

  const row = await eventually(async () => {
    const r = await database.db.query('SELECT id, delivered_at, last_error FROM outbox WHERE aggregate_id = $1', [user.id]);
    return r.rows[0]?.delivered_at ? r.rows[0] : undefined;
  }, 30_000, 'the outbox row to be delivered');
  t.equal(row.last_error, null);
  const desc = await temporal.client.workflow.getHandle(userSyncWorkflowId(user.id)).describe();
  t.equal(desc.type, 'userSync', 'the workflow exists');
  const attr = desc.typedSearchAttributes.get(userNameSearchAttribute);
  t.ok(attr && userName.startsWith(attr.slice(0, -1)), 'the search attribute holds a prefix of the userName');
  t.ok(Buffer.byteLength(JSON.stringify(attr)) <= VISIBILITY_VALUE_MAX_BYTES, 'within the bound');
  const memo = desc.memo as { userName: string };
  t.equal(memo.userName, attr, 'the memo holds the same bounded value');
  await eventually(async () => {
    const r = await database.db.query('SELECT synced_seq FROM user_sync_state WHERE user_id = $1', [user.id]);
    return r.rows[0]?.synced_seq === row.id;
  }, 60_000, 'the user to be synced');
});

t.test('notifyUserChanged accepts any userName length', async (t) => {
  const userId = '00000000-0000-4000-8000-000000000001';
  await notifyUserChanged(temporal.client, `${temporal.taskQueue}-idle`, { idleMs: 1000, debounceMs: 0 }, { userId, userName: 'x'.repeat(100_000), seq: 1 });
  const handle = temporal.client.workflow.getHandle(userSyncWorkflowId(userId));
  t.equal((await handle.describe()).type, 'userSync');
  await handle.terminate('test done');
});

t.test('an outage parks nothing: tries while Temporal does not answer never count towards dead-lettering', async (t) => {
  // This gateway's Temporal is an address where nothing listens.
  const down = await startTestGateway(t, {
    database,
    temporalAddress: '127.0.0.1:1',
    taskQueue: temporal.taskQueue,
    env: { OUTBOX_MAX_ATTEMPTS: '2', OUTBOX_POLL_MS: '10', OUTBOX_RETRY_MAX_MS: '20' },
  });
  const res = await down.scim({ method: 'POST', url: '/scim/v2/Users', payload: userBody('outage@example.com') });
  t.equal(res.statusCode, 201, 'the write is accepted');
  const userId: string = res.json().id;
  const tried = await eventually(async () => {
    const r = await database.db.query('SELECT id, attempts, refusals, dead_lettered_at, last_error FROM outbox WHERE aggregate_id = $1', [userId]);
    return r.rows[0]?.attempts >= 6 ? r.rows[0] : undefined;
  }, 30_000, 'several tries during the outage');
  await down.app.outbox.stop();
  t.equal(tried.dead_lettered_at, null, `not parked after ${tried.attempts} tries against a Temporal that does not answer`);
  t.equal(tried.refusals, 0, 'none of them was a refusal');
  t.ok(tried.last_error, 'the last error is kept for the operator');
  // Temporal is back: the same row is delivered, with no re-drive.
  const up = await startTestGateway(t, { database, temporalAddress: temporal.address, taskQueue: temporal.taskQueue });
  await eventually(async () => (await database.db.query('SELECT delivered_at FROM outbox WHERE id = $1', [tried.id])).rows[0]?.delivered_at, 30_000, 'delivery once Temporal answers');
  t.equal((await temporal.client.workflow.getHandle(userSyncWorkflowId(userId)).describe()).type, 'userSync', 'the workflow exists');
  await up.app.outbox.stop();
});

t.test('a row Temporal never accepts is dead-lettered, visible, audited, and delivered once re-driven', async (t) => {
  // This gateway's namespace does not exist: Temporal answers every try with an error.
  const broken = await startTestGateway(t, {
    database,
    temporalAddress: temporal.address,
    taskQueue: temporal.taskQueue,
    env: { OUTBOX_MAX_ATTEMPTS: '3', OUTBOX_POLL_MS: '20', OUTBOX_RETRY_MAX_MS: '50', TEMPORAL_NAMESPACE: 'no-such-namespace' },
  });
  const good = await startTestGateway(t, { database, temporalAddress: temporal.address, taskQueue: temporal.taskQueue, dispatchOutbox: false, scopes: ['admin'] });

  const res = await broken.scim({ method: 'POST', url: '/scim/v2/Users', payload: userBody('dead.letter@example.com') });
  t.equal(res.statusCode, 201, 'the write is accepted');
  const userId: string = res.json().id;

  const parked = await eventually(async () => {
    const r = await database.db.query('SELECT id, attempts, dead_lettered_at, dead_letter_reason, delivered_at FROM outbox WHERE aggregate_id = $1', [userId]);
    return r.rows[0]?.dead_lettered_at ? r.rows[0] : undefined;
  }, 60_000, 'the row to be dead-lettered');
  t.equal(parked.attempts, 3, 'after exactly OUTBOX_MAX_ATTEMPTS tries');
  t.equal(parked.delivered_at, null);
  t.ok(parked.dead_letter_reason, 'with its reason');
  await broken.app.outbox.stop();
  const stillParked = await database.db.query('SELECT attempts FROM outbox WHERE id = $1', [parked.id]);
  t.equal(stillParked.rows[0].attempts, 3, 'a dead letter is not tried again');

  const list = await good.call('GET', '/api/outbox/dead-letters');
  t.match(list, [{ id: Number(parked.id), topic: 'user.changed', aggregateId: userId, attempts: 3, reason: parked.dead_letter_reason }], 'the admin API lists it');
  t.same(await good.call('GET', '/api/outbox'), { pending: 0, oldestPendingAgeSeconds: 0, deadLetters: 1 });

  const ready = await good.app.inject({ url: '/readyz' });
  t.equal(ready.statusCode, 200, 'this gateway can still serve');
  t.match(ready.json(), { status: 'degraded', checks: { postgres: 'ok', temporal: 'ok', outbox: 'dead letters' }, outbox: { deadLetters: 1 } }, '/readyz shows the dead letter');

  const deadEvent = await database.db.query(`SELECT actor, reason, after FROM audit_events WHERE action = 'outbox.dead_lettered' AND resource_id = $1`, [String(parked.id)]);
  t.match(deadEvent.rows, [{ actor: 'outbox', reason: parked.dead_letter_reason, after: { topic: 'user.changed', aggregateId: userId, attempts: 3 } }], 'dead-lettering is audited');

  t.equal((await good.scim({ method: 'POST', url: '/api/outbox/dead-letters/999999/redrive' })).statusCode, 404, 'an unknown dead letter is 404');
  const redriven = await good.call('POST', `/api/outbox/dead-letters/${parked.id}/redrive`);
  t.same(redriven, { redriven: [Number(parked.id)] });
  good.app.outbox.start();
  await eventually(async () => {
    const r = await database.db.query('SELECT delivered_at FROM outbox WHERE id = $1', [parked.id]);
    return r.rows[0]?.delivered_at;
  }, 30_000, 'the re-driven row to be delivered');
  t.equal((await temporal.client.workflow.getHandle(userSyncWorkflowId(userId)).describe()).type, 'userSync', 'the workflow exists');
  const redriveEvent = await database.db.query(`SELECT actor FROM audit_events WHERE action = 'outbox.redriven' AND resource_id = $1`, [String(parked.id)]);
  t.equal(redriveEvent.rows.length, 1, 're-driving is audited');
  t.match(redriveEvent.rows[0].actor, /^test-/, 'attributed to the admin token');
  t.same(await good.call('GET', '/api/outbox/dead-letters'), []);
  t.equal((await good.app.inject({ url: '/readyz' })).json().status, 'ok');
  t.same(await good.call('POST', '/api/outbox/dead-letters/redrive'), { redriven: [] }, 're-driving all with none parked does nothing');
});

t.test('a row refused at the boundary is dead-lettered without holding back the same user’s later changes', async (t) => {
  const gw = await startTestGateway(t, {
    database,
    temporalAddress: temporal.address,
    taskQueue: temporal.taskQueue,
    dispatchOutbox: false,
    env: { OUTBOX_MAX_ATTEMPTS: '2', OUTBOX_POLL_MS: '20', OUTBOX_RETRY_MAX_MS: '50' },
  });
  const directory = new Directory(database.db, new SchemaRegistry());
  const user = await directory.create('User', { name: 'test' }, userBody('refused.first@example.com'));
  // A message no dispatcher can deliver, ahead of the user's own change in the queue.
  await database.db.query(`UPDATE outbox SET delivered_at = now() WHERE aggregate_id = $1`, [user.id]);
  const { rows: [refused] } = await database.db.query<{ id: string }>(`INSERT INTO outbox (topic, aggregate_id, payload) VALUES ('user.renamed', $1, '{}') RETURNING id`, [user.id]);
  const { rows: [later] } = await database.db.query<{ id: string }>(
    `INSERT INTO outbox (topic, aggregate_id, payload) VALUES ('user.changed', $1, jsonb_build_object('userName', 'refused.first@example.com')) RETURNING id`,
    [user.id],
  );
  gw.app.outbox.start();

  const delivered = await eventually(async () => {
    const r = await database.db.query('SELECT delivered_at, attempts FROM outbox WHERE id = $1', [later!.id]);
    return r.rows[0]?.delivered_at ? r.rows[0] : undefined;
  }, 30_000, 'the later change to be delivered');
  t.equal(delivered.attempts, 1, 'the tries the refused row used are not charged to the row waiting behind it');
  const parked = await database.db.query('SELECT attempts, dead_letter_reason FROM outbox WHERE id = $1', [refused!.id]);
  t.match(parked.rows[0], { attempts: 2, dead_letter_reason: /no delivery for topic "user.renamed"/ }, 'the refused row is parked with its reason');
  await gw.app.outbox.stop();
  await database.db.query('DELETE FROM outbox WHERE id = $1', [refused!.id]);
});
