/**
 * A worker shuts down even while its database fails: the userSync workflow's planning runs as a
 * local activity, and its retries against a database that is gone wait in a workflow timer once
 * they are seconds apart, instead of holding the workflow task (and with it the worker's shutdown)
 * open for good. Another worker then carries the workflow on.
 */
import t from 'tap';
import { userBody } from '../helpers/gateway.js';
import { eventually } from '../helpers/temporal.js';
import { startTestStack } from '../helpers/stack.js';
import { countEvents, EventType } from '../helpers/history.js';
import { userSyncWorkflowId } from '../../workflows/client.js';

const stack = await startTestStack(t, { idleMs: 1000, worker: false });
const pool = stack.database.newPool();
const worker = await stack.temporal.startWorker(pool);
await pool.end();

const user = await stack.gw.call('POST', '/scim/v2/Users', userBody('shutdown@example.com'), 201);
const workflowId = userSyncWorkflowId(user.id as string);

t.test('planning fails against the ended pool, and its retries move to a timer', async (t) => {
  await eventually(async () => (await countEvents(stack.temporal.client, workflowId, EventType.EVENT_TYPE_TIMER_STARTED)) >= 2, 60_000, 'a retry timer after the debounce');
  t.pass('the workflow task was completed with a timer for the next try');
});

t.test('the worker shuts down while the database is still gone', async (t) => {
  worker.shutdown();
  await eventually(async () => worker.getState() === 'STOPPED', 60_000, 'the worker to stop');
  t.equal(worker.getState(), 'STOPPED');
});

t.test('another worker with a working database finishes the sync', async (t) => {
  await stack.temporal.startWorker(stack.database.newPool());
  const state = await eventually(async () => {
    const { rows } = await stack.database.db.query<{ synced_seq: string }>('SELECT synced_seq FROM user_sync_state WHERE user_id = $1', [user.id]);
    return rows[0];
  }, 60_000, 'the change recorded as applied');
  t.ok(state, 'recorded by the second worker');
});
