/**
 * What one round of a user's sync costs the Temporal server, and that it stays readable: a
 * connector's steps in one activity (resumed after a retry, the failed step named), the debounce
 * timed from the change's commit, and a user's changes claimed together delivered as one signal.
 */
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import t from 'tap';
import type proto from '@temporalio/proto';
import { defaultPayloadConverter } from '@temporalio/common';
import { userBody } from '../helpers/gateway.js';
import { createTestDatabase } from '../helpers/db.js';
import { eventually } from '../helpers/temporal.js';
import { EventType } from '../helpers/history.js';
import { startTestStack } from '../helpers/stack.js';
import { memoryTarget } from '../fixtures/memory-connector.js';
import { notifyUserChanged, userSyncWorkflowId } from '../../workflows/client.js';
import { OutboxDispatcher } from '../../gateway/outbox/dispatcher.js';

const PLUGIN = fileURLToPath(new URL('../fixtures/memory-connector.ts', import.meta.url));
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';

const { database, temporal, gw } = await startTestStack(t, { idleMs: 1000 });
const ns = `rounds-${temporal.taskQueue}`;
const target = memoryTarget(ns);
const api = gw.call;

type Event = proto.temporal.api.history.v1.IHistoryEvent;

async function events(workflowId: string): Promise<Event[]> {
  return (await temporal.client.workflow.getHandle(workflowId).fetchHistory()).events ?? [];
}

const scheduled = (es: Event[]) =>
  es
    .filter((e) => e.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
    .map((e) => ({
      type: e.activityTaskScheduledEventAttributes?.activityType?.name ?? '',
      summary: e.userMetadata?.summary ? defaultPayloadConverter.fromPayload<string>(e.userMetadata.summary) : '',
    }));

async function joinEngineering(userName: string): Promise<string> {
  const user = await api('POST', '/scim/v2/Users', userBody(userName), 201);
  const [eng] = (await api('GET', `/scim/v2/Groups?filter=${encodeURIComponent('displayName eq "Engineering"')}`)).Resources;
  await api('PATCH', `/scim/v2/Groups/${eng.id}`, { schemas: [PATCH], Operations: [{ op: 'add', path: 'members', value: [{ value: user.id }] }] });
  return user.id as string;
}

t.before(async () => {
  await api('PUT', '/api/connectors/memory', { id: 'memory', type: PLUGIN, config: { namespace: ns } });
  await api('POST', '/api/entitlements', { connectorId: 'memory', name: 'eng', target: { group: 'eng' } }, 201);
  await api('POST', '/api/entitlements', { connectorId: 'memory', name: 'oncall', target: { group: 'oncall' } }, 201);
  await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Engineering' }, 201);
  await api('POST', '/api/rules', { name: 'engineering', group: 'Engineering', entitlements: ['memory/eng', 'memory/oncall'] }, 201);
});

t.test("a connector's steps run in one activity, in order; a retry carries on after the steps done", async (t) => {
  // The first grant is throttled once: the activity is retried, and resumes at that grant.
  target.failures.set('grant', [{ kind: 'transient', retryAfterMs: 100 }]);
  const callsBefore = target.calls.filter((c) => c === 'createAccount').length;
  const userId = await joinEngineering('grace@example.com');
  const remote = `acct-${userId}`;
  await eventually(async () => target.groups.get('eng')?.has(remote) && target.groups.get('oncall')?.has(remote), 60_000, 'grace in eng and oncall');
  t.equal(target.calls.filter((c) => c === 'createAccount').length - callsBefore, 1, 'the account was created once, the retry did not create it again');

  const history = await eventually(async () => {
    const es = await events(userSyncWorkflowId(userId));
    return scheduled(es).some((a) => a.type === 'applySteps') ? es : undefined;
  }, 30_000, 'the steps in the history');
  const activities = scheduled(history);
  t.notOk(
    activities.some((a) => ['createAccount', 'grantEntitlement'].includes(a.type)),
    `one activity for the connector's three steps, none per step: ${JSON.stringify(activities)}`,
  );
  const [first] = activities;
  t.equal(first!.type, 'applySteps');
  t.match(
    first!.summary,
    /^create account grace@example\.com in memory; grant memory\/(eng|oncall) \(rule engineering\) to grace@example\.com; grant memory\/(eng|oncall) \(rule engineering\) to grace@example\.com$/,
    'its summary names every step, in order: the account first',
  );
  const completed = history.find((e) => e.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED);
  const result = defaultPayloadConverter.fromPayload<{ done: string[] }>(completed!.activityTaskCompletedEventAttributes!.result!.payloads![0]!);
  const granted = [...first!.summary.matchAll(/grant (memory\/\w+)/g)].map((m) => `granted ${m[1]} to grace@example.com`);
  t.match(result.done, [/^created account grace@example\.com in memory/, granted[0], granted[1]], `its result says what each step did, in the same order: ${JSON.stringify(result.done)}`);
  const audit = await database.db.query<{ action: string; n: number }>(
    `SELECT action, count(*)::int AS n FROM audit_events WHERE resource_id = $1 GROUP BY action ORDER BY action`,
    [`memory:${userId}`],
  );
  const count = (action: string) => audit.rows.find((r) => r.action === action)?.n ?? 0;
  t.equal(count('account.createAccount'), 1, 'the account created once (audit)');
  t.equal(count('account.grantEntitlement'), 2, 'each grant recorded once (audit)');
});

t.test('a step refused for good: the steps before it stay done, the workflow and the API name the one that failed', async (t) => {
  // Refused on every try, so that a later round (the group change after the create) fails the same way.
  target.failures.set('grant', Array.from({ length: 20 }, () => ({ kind: 'permanent' as const, message: 'group is read-only' })));
  t.teardown(() => target.failures.delete('grant'));
  const userId = await joinEngineering('hedy@example.com');
  const handle = temporal.client.workflow.getHandle(userSyncWorkflowId(userId));
  const details = await eventually(async () => {
    const metadata = await handle.query<{ currentDetails?: string }>('__temporal_workflow_metadata');
    return metadata.currentDetails?.includes('FAILED') ? metadata.currentDetails : undefined;
  }, 60_000, 'the failure in the workflow details');
  t.match(details, /^- (created|updated) account hedy@example\.com in memory/m, `what was done first: ${details}`);
  t.match(details, /- FAILED to grant memory\/(eng|oncall) \(rule engineering\) to hedy@example\.com: .*group is read-only/, 'the step that failed, in words, with the reason');
  t.equal(details.split('\n').filter((l) => l.startsWith('- ')).length, 2, 'the step after it was not tried');
  t.ok(target.accounts.has(`acct-${userId}`), 'the account exists in the target');
  const rows = await api('GET', `/api/users/${userId}/provisioning`);
  t.match(rows[0], { connectorId: 'memory', state: 'active', lastError: /group is read-only/ }, 'the account shows the reason');
});

t.test("the debounce runs from the change's commit: a change that waited longer costs no timer", async (t) => {
  const user = await api('POST', '/scim/v2/Users', userBody('ida@example.com'), 201);
  const userId = user.id as string;
  await eventually(async () => {
    const r = await database.db.query('SELECT synced_seq FROM user_sync_state WHERE user_id = $1', [userId]);
    return r.rows[0];
  }, 30_000, 'the first sync');
  await temporal.client.workflow.getHandle(userSyncWorkflowId(userId)).result();
  const timing = { idleMs: 500, debounceMs: 3000 };
  const debounceTimers = async () =>
    (await events(userSyncWorkflowId(userId)))
      .filter((e) => e.eventType === EventType.EVENT_TYPE_TIMER_STARTED)
      .filter((e) => defaultPayloadConverter.fromPayload<string>(e.userMetadata!.summary!).startsWith('debounce'))
      .map((e) => Number(e.timerStartedEventAttributes?.startToFireTimeout?.seconds ?? 0) * 1000 + Math.round((e.timerStartedEventAttributes?.startToFireTimeout?.nanos ?? 0) / 1e6));

  // Committed ten seconds ago (a backlog): settled already.
  await notifyUserChanged(temporal.client, temporal.taskQueue, timing, { userId, userName: 'ida@example.com', seq: 1_000_000, at: Date.now() - 10_000 });
  await temporal.client.workflow.getHandle(userSyncWorkflowId(userId)).result();
  t.same(await debounceTimers(), [], 'no debounce timer for a change older than the debounce');

  // Committed just now: the debounce waits for the rest of it.
  await notifyUserChanged(temporal.client, temporal.taskQueue, timing, { userId, userName: 'ida@example.com', seq: 1_000_001, at: Date.now() });
  await temporal.client.workflow.getHandle(userSyncWorkflowId(userId)).result();
  const timers = await debounceTimers();
  t.equal(timers.length, 1, 'one debounce timer for a fresh change');
  t.ok(timers[0]! > 0 && timers[0]! <= 3000, `no longer than the debounce (${timers[0]} ms)`);
});

t.test("a user's changes claimed together go out as one signal, the latest; all count as delivered", async (t) => {
  const taskQueue = `${temporal.taskQueue}-coalesce`; // no worker: the signals stay in the history as sent
  // A database of its own, which no gateway's dispatcher polls: this one alone claims the rows.
  const own = await createTestDatabase(t);
  const userId = '5a0a3c8e-2f4b-4e55-9a51-0c6f1d2e3b4a';
  const other = '6b1b4d9f-3a5c-4f66-8b62-1d7a2e3f4c5b';
  const { rows } = await own.db.query<{ id: string }>(
    `INSERT INTO outbox (topic, aggregate_id, payload) VALUES
       ('user.changed', $1, '{"userName":"joan@example.com"}'), ('user.changed', $2, '{"userName":"kay@example.com"}'),
       ('user.changed', $1, '{"userName":"joan@example.com"}'), ('user.changed', $1, '{"userName":"joan.renamed@example.com"}')
     RETURNING id`,
    [userId, other],
  );
  const ids = rows.map((r) => Number(r.id));
  const dispatcher = new OutboxDispatcher({
    db: own.db,
    temporal: async () => temporal.client,
    taskQueue,
    timing: { idleMs: 1000, debounceMs: 0 },
    pollMs: 1000,
    batchSize: 100,
    leaseMs: 30_000,
    log: pino({ level: 'silent' }),
  });
  t.equal(await dispatcher.dispatchOnce(), 4, 'one batch claims the four rows');

  const signals = (await events(userSyncWorkflowId(userId)))
    .filter((e) => e.eventType === EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
    .map((e) => defaultPayloadConverter.fromPayload<{ seq: number; at?: number }>(e.workflowExecutionSignaledEventAttributes!.input!.payloads![0]!));
  t.equal(signals.length, 1, `one signal for joan's three changes: ${JSON.stringify(signals)}`);
  t.equal(signals[0]!.seq, ids[3], 'the latest change');
  t.ok(typeof signals[0]!.at === 'number' && Math.abs(signals[0]!.at - Date.now()) < 60_000, 'with the time it was committed');
  const memo = (await temporal.client.workflow.getHandle(userSyncWorkflowId(userId)).describe()).memo;
  t.same(memo, { userName: 'joan.renamed@example.com' }, "the workflow carries the user's latest name");
  const delivered = await own.db.query<{ id: string }>('SELECT id FROM outbox WHERE id = ANY($1) AND delivered_at IS NOT NULL ORDER BY id', [ids]);
  t.same(delivered.rows.map((r) => Number(r.id)), ids, 'every row counts as delivered, the other user\'s too');
  const kay = (await events(userSyncWorkflowId(other))).filter((e) => e.eventType === EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED);
  t.equal(kay.length, 1, "the other user's change went out on its own");
  for (const id of [userId, other]) await temporal.client.workflow.getHandle(userSyncWorkflowId(id)).terminate('test done');
});
