import t from 'tap';
import { createTestDatabase } from '../helpers/db.js';
import { startTestGateway, userBody } from '../helpers/gateway.js';
import { eventually, testTemporal } from '../helpers/temporal.js';
import { userNameSearchAttribute, userSyncWorkflowId } from '../../workflows/client.js';

const database = await createTestDatabase(t);
const temporal = await testTemporal(t);
const gw = await startTestGateway(t, { database, temporalAddress: temporal.address, taskQueue: temporal.taskQueue });
await temporal.startWorker(database.newPool());

t.test('SCIM POST /Users starts a userSync workflow readable in the Temporal UI', async (t) => {
  const res = await gw.scim({ method: 'POST', url: '/scim/v2/Users', payload: userBody('walking.slice@example.com') });
  t.equal(res.statusCode, 201, res.body);
  const userId: string = res.json().id;
  const { rows } = await database.db.query<{ id: number }>('SELECT id FROM outbox WHERE aggregate_id = $1', [userId]);
  const seq = rows[0]!.id;

  const state = await eventually(async () => {
    const r = await database.db.query('SELECT synced_seq, workflow_id, syncs FROM user_sync_state WHERE user_id = $1', [userId]);
    return r.rows[0];
  }, 30_000, 'the workflow to sync the user');
  t.equal(state.synced_seq, seq, 'the workflow applied the change the outbox announced');
  t.equal(state.workflow_id, `user-sync:${userId}`);
  t.equal(state.syncs, 1);

  const handle = temporal.client.workflow.getHandle(userSyncWorkflowId(userId));
  const desc = await handle.describe();
  t.equal(desc.workflowId, `user-sync:${userId}`, 'business workflow id');
  t.equal(desc.type, 'userSync');
  t.equal(desc.taskQueue, temporal.taskQueue);
  t.same(desc.memo, { userName: 'walking.slice@example.com' }, 'memo carries the userName');
  t.equal(desc.typedSearchAttributes.get(userNameSearchAttribute), 'walking.slice@example.com', 'searchable by userName');

  const outbox = await database.db.query('SELECT delivered_at, attempts FROM outbox WHERE id = $1', [seq]);
  t.ok(outbox.rows[0].delivered_at, 'the outbox row is marked delivered');
  t.equal(outbox.rows[0].attempts, 1);

  const result = await handle.result();
  t.equal(result.appliedSeq, seq, 'the workflow completes once the user is idle');
  t.same(result.lastSync, ['nothing to change'], 'and says what its last sync did');
});
