/**
 * Durability of provisioning: worker processes are killed again and again while users are being
 * provisioned to a real SCIM service (SCIMMY); every user still ends up in the target exactly once,
 * with exactly one create request each and every membership applied.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import t from 'tap';
import { userBody } from '../helpers/gateway.js';
import { eventually } from '../helpers/temporal.js';
import { startTestStack } from '../helpers/stack.js';
import { startScimmyServer } from '../connectors/scim/scimmy-server.js';

const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
const USERS = 12;

t.test('killing workers mid-provisioning loses and duplicates nothing', async (t) => {
  // Workers are processes of this test's own, killed and restarted below.
  const { database, temporal, gw } = await startTestStack(t, { idleMs: 1000, worker: false });
  const target = await startScimmyServer({ token: 'crash-target-token' });
  t.teardown(() => target.close());

  const api = gw.call;
  await api('PUT', '/api/connectors/target', { id: 'target', type: 'scim', config: { baseUrl: target.baseUrl, token: 'env:CRASH_TARGET_TOKEN' } }, 200);
  await api('POST', '/api/entitlements', { connectorId: 'target', name: 'crew', target: { group: 'Crew', create: true } }, 201);
  const group = await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Crew' }, 201);
  await api('POST', '/api/rules', { name: 'crew', group: 'Crew', entitlements: ['target/crew'] }, 201);

  const env = {
    ...process.env,
    DATABASE_URL: database.url,
    TEMPORAL_ADDRESS: temporal.address,
    TEMPORAL_TASK_QUEUE: temporal.taskQueue,
    CRASH_TARGET_TOKEN: 'crash-target-token',
    LOG_LEVEL: 'error',
  };
  const workers: ChildProcess[] = [];
  const startWorker = () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'workflows/worker.ts'], { env, stdio: ['ignore', 'ignore', 'ignore'] });
    workers.push(child);
    return child;
  };
  t.teardown(() => workers.forEach((w) => w.kill('SIGKILL')));
  let worker = startWorker();

  const ids: string[] = [];
  for (let i = 0; i < USERS; i++) ids.push((await api('POST', '/scim/v2/Users', userBody(`crew.${i}@example.com`), 201)).id);
  await api('PATCH', `/scim/v2/Groups/${group.id}`, { schemas: [PATCH], Operations: [{ op: 'add', path: 'members', value: ids.map((value) => ({ value })) }] }, 200);

  // Kill the worker repeatedly while the users' workflows run, starting a new one each time.
  for (let round = 0; round < 4; round++) {
    await new Promise((r) => setTimeout(r, 1500));
    worker.kill('SIGKILL');
    await new Promise((r) => worker.once('exit', r));
    worker = startWorker();
  }

  await eventually(
    async () => {
      const crew = target.findGroupByName('Crew');
      const members = Array.isArray(crew?.members) ? crew.members.length : 0;
      return target.users.size === USERS && members === USERS;
    },
    240_000,
    `all ${USERS} users in the target's Crew group`,
  );
  const userNames = [...target.users.values()].map((u) => String(u.userName).toLowerCase()).sort();
  t.same(userNames, ids.map((_, i) => `crew.${i}@example.com`).sort(), 'every user exists once in the target');
  const creates = target.requests.filter((r) => r.method === 'POST' && r.path === '/Users').length;
  t.equal(creates, USERS, 'exactly one create request per user, despite the crashes');
  const crew = target.findGroupByName('Crew')!;
  const memberIds = (crew.members as Array<{ value: string }>).map((m) => m.value);
  t.equal(new Set(memberIds).size, USERS, 'no duplicate membership');
  const { rows } = await database.db.query<{ n: number }>("SELECT count(*)::int AS n FROM accounts WHERE connector_id = 'target' AND state = 'active'");
  t.equal(rows[0]!.n, USERS, 'the recorded actual state matches');
});
