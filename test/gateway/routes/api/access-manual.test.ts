/**
 * Access given by hand, against real PostgreSQL and the Temporal dev server: refused attempts at
 * fulfilment tasks are audited and exported; manual access is extended (its end moves on, no new
 * task) and revoked (the fulfilment group gets the revocation task); and what the Temporal UI shows
 * of an accessRequest workflow (activity summaries, current details).
 */
import t from 'tap';
import { defaultPayloadConverter } from '@temporalio/common';
import { userBody } from '../../../helpers/gateway.js';
import { eventually } from '../../../helpers/temporal.js';
import { startTestStack } from '../../../helpers/stack.js';
import { createToken } from '../../../../core/auth/tokens.js';
import { accessRequestWorkflowId } from '../../../../workflows/client.js';

const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';

const { database, temporal, gw } = await startTestStack(t, { idleMs: 1000 });
const api = gw.call;

const user = async (userName: string) => (await api('POST', '/scim/v2/Users', userBody(userName), 201)).id as string;
const ids: Record<string, string> = {};
for (const name of ['ria', 'ben', 'fay', 'gus', 'hal', 'ida']) ids[name] = await user(`${name}@example.com`);
await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Helpdesk', members: [{ value: ids.fay }, { value: ids.gus }] }, 201);
await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Security', members: [{ value: ids.hal }, { value: ids.ida }] }, 201);

const tokens: Record<string, string> = {};
for (const [name, id] of Object.entries(ids)) tokens[name] = (await createToken(database.db, `personal-${name}`, ['requests'], undefined, id)).token;

interface Answer {
  status: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests inspect the JSON freely
  body: any;
}

async function call(who: string, method: 'GET' | 'POST' | 'PUT', url: string, payload?: unknown): Promise<Answer> {
  const res = await gw.scim({
    method,
    url,
    token: tokens[who] ?? who,
    headers: payload !== undefined ? { 'content-type': 'application/json' } : {},
    ...(payload !== undefined ? { payload: payload as object } : {}),
  });
  return { status: res.statusCode, body: res.json() };
}

const manual = (extra: Record<string, unknown> = {}) => ({
  displayName: 'Laptop admin rights',
  durations: { defaultSeconds: 3600, maxSeconds: 7200 },
  fulfilment: { mode: 'manual', group: 'Helpdesk', instructions: 'MDM: local admins' },
  stages: [{ approvers: { users: ['ben@example.com'] } }],
  ...extra,
});

/** `who` requests under `policy`, ben approves, and answers the request id with its open grant task. */
async function approved(who: string, policy: string, body: Record<string, unknown> = {}): Promise<{ id: string; taskId: string | undefined }> {
  const made = await call(who, 'POST', '/api/requests', { policy, ...body });
  if (made.status !== 201) throw new Error(`request: ${made.status} ${JSON.stringify(made.body)}`);
  const id = made.body.id as string;
  await eventually(async () => (await call('ben', 'GET', '/api/approvals')).body.some((x: { id: string }) => x.id === id), 30_000, 'the request to reach ben');
  const decided = await call('ben', 'POST', `/api/requests/${id}/decisions`, { decision: 'approve' });
  if (decided.status !== 200) throw new Error(`decision: ${decided.status} ${JSON.stringify(decided.body)}`);
  if (body.extends !== undefined) return { id, taskId: undefined };
  const task = await eventually(async () => (await call('fay', 'GET', '/api/tasks')).body.find((x: { requestId: string; kind: string }) => x.requestId === id && x.kind === 'grant'), 30_000, 'the grant task');
  return { id, taskId: task.id as string };
}

async function status(id: string, wanted: string): Promise<Answer['body']> {
  return await eventually(async () => {
    const r = (await call(gw.token, 'GET', `/api/requests/${id}`)).body;
    return r.status === wanted ? r : undefined;
  }, 30_000, `request ${id} to be ${wanted}`);
}

t.test('refused attempts at a task are audited with actor, task and reason, and exported for auditors', async (t) => {
  await api('PUT', '/api/access-policies/laptop', manual(), 201);
  const { id, taskId } = await approved('ria', 'laptop');

  const outsider = await call('hal', 'POST', `/api/tasks/${taskId}/claim`);
  t.equal(outsider.status, 403, 'someone outside the fulfilment group cannot claim the task');
  t.match(outsider.body.message, 'not a member of the fulfilment group');
  t.equal((await call('fay', 'POST', `/api/tasks/${taskId}/claim`)).body.status, 'claimed', 'fay claims it');
  const again = await call('gus', 'POST', `/api/tasks/${taskId}/claim`);
  t.equal(again.status, 409, 'a claimed task cannot be claimed again');
  t.match(again.body.message, 'claimed by fay@example.com');
  const notMine = await call('gus', 'POST', `/api/tasks/${taskId}/complete`, { outcome: 'done' });
  t.equal(notMine.status, 403, 'a task claimed by someone else cannot be completed');
  t.match(notMine.body.message, 'the task is claimed by fay@example.com');
  t.equal((await call('fay', 'POST', `/api/tasks/${taskId}/complete`, { outcome: 'done', note: 'done via MDM' })).status, 200, 'fay completes it');
  t.equal((await call('fay', 'POST', `/api/tasks/${taskId}/complete`, { outcome: 'done', note: 'done via MDM' })).status, 200, 'her double click answers the task');
  const twice = await call('gus', 'POST', `/api/tasks/${taskId}/complete`, { outcome: 'done' });
  t.equal(twice.status, 409, 'a second completion by someone else is refused');
  t.match(twice.body.message, 'the task is done already (reported by fay@example.com)');
  t.equal((await call('fay', 'POST', `/api/tasks/${taskId}/complete`, { outcome: 'failed' })).status, 409, 'a contrary report after done is refused');
  await status(id, 'fulfilled');

  const { rows } = await database.db.query<{ actor: string; reason: string; after: Record<string, string> }>(
    `SELECT actor, reason, after FROM audit_events WHERE action = 'access-task.refused' AND resource_id = $1 ORDER BY id`,
    [taskId],
  );
  t.same(
    rows.map((r) => [r.actor, r.after.attempt, r.after.outcome ?? null, r.reason]),
    [
      ['hal@example.com', 'claim', null, 'not a member of the fulfilment group of this task'],
      ['gus@example.com', 'claim', null, 'the task is claimed (claimed by fay@example.com)'],
      ['gus@example.com', 'complete', 'done', 'the task is claimed by fay@example.com'],
      ['gus@example.com', 'complete', 'done', 'the task is done already (reported by fay@example.com)'],
      ['fay@example.com', 'complete', 'failed', 'the task is done already (reported by fay@example.com)'],
    ],
    'each refusal is one audit event naming who, what and why; the idempotent repeat is none',
  );
  t.ok(rows.every((r) => r.after.requestId === id && r.after.kind === 'grant'), 'each names the request and the kind of task');

  const json = await gw.scim({ method: 'GET', url: '/api/requests/export?from=2000-01-01&format=json' });
  const exported = json.json<Array<{ id: string; taskRefusals: Array<{ task: string; actor: string; attempt: string; reason: string }> }>>().find((r) => r.id === id);
  t.same(
    exported?.taskRefusals.map((x) => `${x.actor} ${x.attempt} ${x.task === taskId}`),
    ['hal@example.com claim true', 'gus@example.com claim true', 'gus@example.com complete true', 'gus@example.com complete true', 'fay@example.com complete true'],
    'the JSON export lists the refused task attempts of the request',
  );
  const csv = (await gw.scim({ method: 'GET', url: '/api/requests/export?from=2000-01-01&format=csv' })).body.trimEnd().split('\r\n');
  t.match(csv[0], /,decisionAt,task$/, 'the CSV has a task column');
  const refusedRows = csv.filter((l) => l.startsWith(id) && l.endsWith(`,${taskId}`));
  t.equal(refusedRows.length, 5, 'and a row per refused task attempt');
  t.ok(refusedRows.some((l) => l.includes(',hal@example.com,claim task,,false,not a member of the fulfilment group of this task,')), 'naming who tried what and why');
});

t.test('manual access: an extension moves its end on without a new task; the original then ends without a revocation task', async (t) => {
  // Long enough for the extension to be requested and approved while the original runs.
  await api('PUT', '/api/access-policies/laptop-short', manual({ durations: { defaultSeconds: 15, maxSeconds: 600 } }), 201);
  const { id, taskId } = await approved('ria', 'laptop-short');
  t.equal((await call('fay', 'POST', `/api/tasks/${taskId}/complete`, { outcome: 'done' })).status, 200);
  const given = await status(id, 'fulfilled');
  t.ok(given.accessUntil, 'the request records when the access ends');

  t.equal((await call('gus', 'POST', '/api/requests', { policy: 'laptop-short', extends: id })).status, 400, "someone else's access cannot be extended");
  const { id: ext } = await approved('ria', 'laptop-short', { extends: id, durationSeconds: 300 });
  const extended = await status(ext, 'fulfilled');
  t.equal(new Date(extended.accessUntil).getTime(), new Date(given.accessUntil).getTime() + 300_000, 'the extension ends its duration after the original end');
  t.same(extended.tasks, [], 'nothing to give by hand: the person has the access already');
  t.match(extended.reason, `the access of request ${id} is prolonged until`);

  // The original's workflow wakes when its access would have ended, sees the extension and ends.
  await temporal.client.workflow.getHandle(accessRequestWorkflowId(id)).result();
  const original = (await call(gw.token, 'GET', `/api/requests/${id}`)).body;
  t.same(original.tasks.map((x: { kind: string }) => x.kind), ['grant'], 'no revocation task for the original: the extension carries the access on');
  t.equal(original.status, 'fulfilled');

  // An administrator revokes the extension: the fulfilment group gets the revocation task at once.
  t.equal((await call('ria', 'POST', `/api/requests/${ext}/revoke`, {})).status, 403, 'only an admin revokes');
  const revoked = await call(gw.token, 'POST', `/api/requests/${ext}/revoke`, { reason: 'left the team' });
  t.equal(revoked.status, 200, `revoked: ${revoked.body.message ?? ''}`);
  t.equal(revoked.body.status, 'revoked');
  t.equal(revoked.body.reason, 'left the team');
  const view = (await call(gw.token, 'GET', `/api/requests/${ext}`)).body;
  t.same(view.tasks.map((x: { kind: string; status: string }) => `${x.kind} ${x.status}`), ['revoke open'], 'the request records its revocation task');
  const task = (await call('gus', 'GET', '/api/tasks')).body.find((x: { requestId: string }) => x.requestId === ext);
  t.match(task, { kind: 'revoke', status: 'open', requester: 'ria@example.com' }, 'the fulfilment group sees it');
  t.equal((await call(gw.token, 'POST', `/api/requests/${ext}/revoke`, {})).status, 409, 'revoked already');
  t.equal((await call('gus', 'POST', `/api/tasks/${task.id}/complete`, { outcome: 'done', note: 'removed from local admins' })).status, 200);
  await temporal.client.workflow.getHandle(accessRequestWorkflowId(ext)).result();
  const { rows } = await database.db.query(`SELECT actor, reason FROM audit_events WHERE action = 'access-request.revoked' AND resource_id = $1`, [ext]);
  t.equal(rows.length, 1, 'the revocation is audited once');
  t.match(rows[0], { actor: /^test-/, reason: 'left the team' }, 'with the admin token that revoked and why');
});

t.test('manual access: revoking access that an extension prolongs revokes both, with one revocation task', async (t) => {
  await api('PUT', '/api/access-policies/laptop-long', manual({ durations: { defaultSeconds: 600, maxSeconds: 600 } }), 201);
  const { id, taskId } = await approved('ria', 'laptop-long');
  t.equal((await call('fay', 'POST', `/api/tasks/${taskId}/complete`, { outcome: 'done' })).status, 200);
  await status(id, 'fulfilled');
  const { id: ext } = await approved('ria', 'laptop-long', { extends: id, durationSeconds: 600 });
  await status(ext, 'fulfilled');
  const revoked = await call(gw.token, 'POST', `/api/requests/${id}/revoke`, {});
  t.equal(revoked.status, 200);
  t.equal(revoked.body.reason, 'revoked by an administrator');
  const extView = await status(ext, 'revoked');
  t.equal(extView.reason, `revoked with request ${id}: revoked by an administrator`, 'the extension holds the same access and is revoked with it');
  const tasks = (await call('fay', 'GET', '/api/tasks')).body.filter((x: { requestId: string; kind: string }) => [id, ext].includes(x.requestId) && x.kind === 'revoke');
  t.same(tasks.map((x: { requestId: string }) => x.requestId), [id], 'one revocation task, on the revoked request');
});

t.test('manual access without an end: an admin revokes it and a revocation task opens', async (t) => {
  await api('PUT', '/api/access-policies/desk', manual({ durations: { permanentAllowed: true } }), 201);
  const { id, taskId } = await approved('ria', 'desk', { permanent: true });
  t.equal((await call('fay', 'POST', `/api/tasks/${taskId}/complete`, { outcome: 'done' })).status, 200);
  const given = await status(id, 'fulfilled');
  t.equal(given.accessUntil, null, 'no end');
  const revoked = await call(gw.token, 'POST', `/api/requests/${id}/revoke`, { reason: 'audit finding' });
  t.equal(revoked.status, 200);
  t.same((await call(gw.token, 'GET', `/api/requests/${id}`)).body.tasks.map((x: { kind: string }) => x.kind), ['grant', 'revoke']);
});

t.test('time-bound manual access ends: the request records it and the revocation task', async (t) => {
  await api('PUT', '/api/access-policies/laptop-brief', manual({ durations: { defaultSeconds: 2, maxSeconds: 2 } }), 201);
  const { id, taskId } = await approved('ria', 'laptop-brief');
  t.equal((await call('fay', 'POST', `/api/tasks/${taskId}/complete`, { outcome: 'done' })).status, 200);
  const view = await eventually(async () => {
    const r = (await call(gw.token, 'GET', `/api/requests/${id}`)).body;
    return r.tasks.some((x: { kind: string }) => x.kind === 'revoke') ? r : undefined;
  }, 30_000, 'the revocation task when the access ends');
  t.equal(view.reason, 'the access ended; the fulfilment group takes it away', 'the request says the access ended');
  const { rows } = await database.db.query(`SELECT 1 FROM audit_events WHERE action = 'access-request.access-ended' AND resource_id = $1`, [id]);
  t.equal(rows.length, 1, 'audited once');
  t.equal((await call(gw.token, 'POST', `/api/requests/${id}/revoke`, {})).status, 409, 'access that ended cannot be revoked');
});

t.test('the Temporal UI: activities carry summaries, the workflow says where the request stands', async (t) => {
  await api(
    'PUT',
    '/api/access-policies/two-stage',
    manual({ stages: [{ name: 'manager', approvers: { users: ['ben@example.com'] } }, { name: 'security team', approvers: { group: 'Security' }, rule: 'quorum', quorum: 2 }] }),
    201,
  );
  const made = await call('ria', 'POST', '/api/requests', { policy: 'two-stage' });
  const id = made.body.id as string;
  const handle = temporal.client.workflow.getHandle(accessRequestWorkflowId(id));
  const details = async () => (await handle.query<{ currentDetails: string }>('__temporal_workflow_metadata')).currentDetails;
  t.equal(
    await eventually(async () => ((await details()).startsWith('stage 1') ? await details() : undefined), 30_000, 'stage 1 in the details'),
    'stage 1 of 2: manager, waiting on ben@example.com (0 of 1 approval, 1 approver)',
  );
  t.equal((await call('ben', 'POST', `/api/requests/${id}/decisions`, { decision: 'approve' })).status, 200);
  await eventually(async () => (await details()).startsWith('stage 2'), 30_000, 'stage 2 in the details');
  t.equal(await details(), 'stage 2 of 2: security team, waiting on group Security (0 of 2 approvals, 2 approvers)', 'the next stage, its approvers and the quorum');
  t.equal((await call('hal', 'POST', `/api/requests/${id}/decisions`, { decision: 'approve' })).status, 200);
  t.equal(await details(), 'stage 2 of 2: security team, waiting on group Security (1 of 2 approvals, 2 approvers)', 'each decision moves the count');
  t.equal((await call('ida', 'POST', `/api/requests/${id}/decisions`, { decision: 'approve' })).status, 200);
  await eventually(async () => (await details()).includes('waiting for the fulfilment group to give the access'), 30_000, 'the task in the details');

  // Activities, and local activities (recorded as markers; a decision is recorded by one).
  const scheduled = ((await handle.fetchHistory()).events ?? []).filter((e) => e.activityTaskScheduledEventAttributes || e.markerRecordedEventAttributes?.markerName === 'core_local_activity');
  const summaries = scheduled.flatMap((e) => (e.userMetadata?.summary ? [defaultPayloadConverter.fromPayload<string>(e.userMetadata.summary)] : []));
  t.equal(summaries.length, scheduled.length, 'every activity scheduled has a summary');
  // The decision that closes a stage records what follows with it, in the same local activity. No
  // notifier is configured here: no notice is sent.
  for (const expected of [
    'load the request and the policy it was made under',
    'stage 1: find who approves',
    'stage 1: record a decision (approve); record the request as pending: manager approved',
    'stage 2: find who approves',
    'stage 2: record a decision (approve)',
    'stage 2: record a decision (approve); record the request as pending: security team approved',
    'record the request as approved: approved; waiting for the fulfilment group',
    'open the task to give the access',
  ]) {
    t.ok(summaries.includes(expected), `the history reads "${expected}"`);
  }
  t.ok(summaries.some((x) => x.startsWith('tell Slack: request.')), 'the Slack notice says which notice it is');
  t.equal(summaries[0], 'load the request and the policy it was made under', 'in the order they ran');
  t.equal(summaries.filter((x) => x.startsWith('notify ')).length, 0, 'no notice without a notifier');
});
