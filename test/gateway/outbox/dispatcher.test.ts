/**
 * The outbox under failure, on real servers: Temporal stopped and restarted, several dispatchers
 * racing over one outbox, and a worker process killed in the middle of a workflow.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { createTestDatabase } from '../../helpers/db.js';
import { startTestGateway, userBody } from '../../helpers/gateway.js';
import { eventually, ownDevServer, testTemporal, uniqueTaskQueue } from '../../helpers/temporal.js';
import { countActivities, countEvents, EventType, executionsByWorkflowId, hasEvent, workflowPollers } from '../../helpers/history.js';
import { freePort } from '../../../scripts/dev-server.js';
import { Directory } from '../../../core/directory/store.js';
import { SchemaRegistry } from '../../../core/scim/schemas.js';
import { userSyncWorkflowId } from '../../../workflows/client.js';
import type { Db } from '../../../core/db/pool.js';

async function syncedSeq(db: Db, userId: string): Promise<number | undefined> {
  const { rows } = await db.query<{ synced_seq: number }>('SELECT synced_seq FROM user_sync_state WHERE user_id = $1', [userId]);
  return rows[0]?.synced_seq;
}

t.test('with Temporal stopped, SCIM writes still succeed and the outbox delivers once it is back', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'scimgw-outbox-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  const dbFilename = join(dir, 'temporal.sqlite');
  let server = await ownDevServer(t, { port, dbFilename });
  const database = await createTestDatabase(t);
  const taskQueue = uniqueTaskQueue();
  const gw = await startTestGateway(t, { database, temporalAddress: server.address, taskQueue });

  const before = await gw.scim({ method: 'POST', url: '/scim/v2/Users', payload: userBody('before.outage@example.com') });
  t.equal(before.statusCode, 201);
  await eventually(async () => {
    const r = await database.db.query('SELECT delivered_at FROM outbox WHERE aggregate_id = $1', [before.json().id]);
    return r.rows[0]?.delivered_at;
  }, 20_000, 'delivery before the outage');

  await server.stop();
  const during = await gw.scim({ method: 'POST', url: '/scim/v2/Users', payload: userBody('during.outage@example.com') });
  t.equal(during.statusCode, 201, 'the write is accepted while Temporal is down');
  const userId: string = during.json().id;

  const failing = await eventually(async () => {
    const r = await database.db.query('SELECT delivered_at, attempts, last_error FROM outbox WHERE aggregate_id = $1', [userId]);
    const row = r.rows[0];
    return row && row.attempts >= 2 && row.last_error ? row : undefined;
  }, 30_000, 'failed delivery attempts to be recorded');
  t.equal(failing.delivered_at, null, 'nothing is marked delivered while Temporal is down');

  server = await ownDevServer(t, { port, dbFilename });
  // A worker on the restarted server; the gateway's connection reconnects by itself.
  const temporal = await testTemporal(t, { address: server.address, taskQueue });
  await temporal.startWorker(database.newPool());

  const seq = await eventually(() => syncedSeq(database.db, userId), 60_000, 'the change accepted during the outage to be synced');
  const row = await database.db.query('SELECT id, delivered_at FROM outbox WHERE aggregate_id = $1', [userId]);
  t.equal(seq, row.rows[0].id, 'the workflow applied exactly that change');
  t.ok(row.rows[0].delivered_at);
  const desc = await temporal.client.workflow.getHandle(userSyncWorkflowId(userId)).describe();
  t.equal(desc.type, 'userSync');
});

t.test('two gateways dispatching one outbox never start the same work twice', async (t) => {
  const temporal = await testTemporal(t);
  const database = await createTestDatabase(t);
  const env = { OUTBOX_BATCH_SIZE: '7', OUTBOX_POLL_MS: '20' };
  const a = await startTestGateway(t, { database, temporalAddress: temporal.address, taskQueue: temporal.taskQueue, env, dispatchOutbox: false });
  const b = await startTestGateway(t, { database, temporalAddress: temporal.address, taskQueue: temporal.taskQueue, env, dispatchOutbox: false });

  const N = 60;
  const ids: string[] = [];
  const directory = new Directory(database.db, new SchemaRegistry());
  for (let i = 0; i < N; i++) {
    const user = await directory.create('User', { name: 'test' }, userBody(`race.${i}@example.com`));
    ids.push(user.id);
  }
  await temporal.startWorker(database.newPool());
  a.app.outbox.start();
  b.app.outbox.start();

  await eventually(async () => {
    const r = await database.db.query('SELECT count(*)::int AS n FROM outbox WHERE delivered_at IS NULL');
    return r.rows[0].n === 0;
  }, 60_000, 'every outbox row to be delivered');
  const claims = await database.db.query('SELECT attempts, count(*)::int AS n FROM outbox GROUP BY attempts');
  t.same(claims.rows, [{ attempts: 1, n: N }], 'each row was claimed exactly once');

  for (const id of ids) await eventually(() => syncedSeq(database.db, id), 30_000, `user ${id} synced`);
  // Every workflow saw exactly one signal, and each user has exactly one execution.
  for (const id of ids.slice(0, 10)) {
    t.equal(await countEvents(temporal.client, userSyncWorkflowId(id), EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED), 1, `one signal for ${id}`);
  }
  const executions = await eventually(async () => {
    const m = await executionsByWorkflowId(temporal.client, `TaskQueue = '${temporal.taskQueue}'`);
    return m.size === N ? m : undefined;
  }, 30_000, 'visibility to list every execution');
  t.same([...new Set(executions.values())], [1], 'no user has a second execution');
  const syncs = await database.db.query('SELECT DISTINCT syncs FROM user_sync_state');
  t.same(syncs.rows, [{ syncs: 1 }], 'each user was synced once');
});

function startWorkerProcess(env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'workflows/worker.ts'], {
    env: { ...process.env, LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  process.once('exit', () => child.kill('SIGKILL'));
  return child;
}

t.test('a worker killed in the middle of a workflow: a new worker resumes it', async (t) => {
  const temporal = await testTemporal(t);
  const database = await createTestDatabase(t);
  const gw = await startTestGateway(t, {
    database,
    temporalAddress: temporal.address,
    taskQueue: temporal.taskQueue,
    // Long enough to kill the worker inside it, on a loaded machine too: the debounce counts from
    // the change's commit, so time the worker spends starting up would come off it.
    env: { USER_SYNC_DEBOUNCE_MS: '10000' },
  });
  const workerEnv = { DATABASE_URL: database.url, TEMPORAL_ADDRESS: temporal.address, TEMPORAL_TASK_QUEUE: temporal.taskQueue };
  const first = startWorkerProcess(workerEnv);
  t.teardown(() => first.kill('SIGKILL'));
  await eventually(
    async () => (await workflowPollers(temporal.client, temporal.namespace, temporal.taskQueue)).some((identity) => identity.startsWith(`${first.pid}@`)),
    90_000,
    'the worker process to poll its task queue',
  );

  const res = await gw.scim({ method: 'POST', url: '/scim/v2/Users', payload: userBody('killed.worker@example.com') });
  t.equal(res.statusCode, 201);
  const userId: string = res.json().id;
  const workflowId = userSyncWorkflowId(userId);
  await eventually(() => hasEvent(temporal.client, workflowId, EventType.EVENT_TYPE_TIMER_STARTED), 60_000, 'the workflow to be waiting in its debounce timer');

  first.kill('SIGKILL');
  await new Promise((r) => first.once('exit', r));
  t.equal(await syncedSeq(database.db, userId), undefined, 'the worker died before the sync ran');

  const second = startWorkerProcess(workerEnv);
  t.teardown(() => second.kill('SIGKILL'));
  const seq = await eventually(() => syncedSeq(database.db, userId), 90_000, 'the new worker to finish the workflow');
  const row = await database.db.query('SELECT id FROM outbox WHERE aggregate_id = $1', [userId]);
  t.equal(seq, row.rows[0].id);
  const result = await temporal.client.workflow.getHandle(workflowId).result();
  t.match(result, { appliedSeq: seq }, 'the same workflow run completed');
  t.equal(await countActivities(temporal.client, workflowId, 'syncUser'), 1, 'the sync activity was scheduled once');
  const state = await database.db.query('SELECT syncs FROM user_sync_state WHERE user_id = $1', [userId]);
  t.equal(state.rows[0].syncs, 1, 'and ran once');
});
