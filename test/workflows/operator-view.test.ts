/**
 * What an operator sees, on the real Temporal dev server and PostgreSQL with a real SCIM target
 * (SCIMMY): workflows, activities and timers that say what they do by name, a step retried behind a
 * failing target shown with its attempt, last error and next attempt, retries that go on until the
 * target is back, names accepted wherever ids are, and reconciliation output that names accounts.
 */
import t from 'tap';
import proto from '@temporalio/proto';
import { defaultPayloadConverter } from '@temporalio/common';
import { userBody } from '../helpers/gateway.js';
import { eventually } from '../helpers/temporal.js';
import { startTestStack } from '../helpers/stack.js';
import { startScimmyServer } from '../connectors/scim/scimmy-server.js';
import { reconcileWorkflowId, userSyncWorkflowId } from '../../workflows/client.js';

const EventType = proto.temporal.api.enums.v1.EventType;
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';

const target = await startScimmyServer();
t.teardown(() => target.close());
// The connector names its token by reference; the in-process worker resolves it from here.
process.env.OPERATOR_VIEW_TARGET_TOKEN = target.token;

const { temporal, gw } = await startTestStack(t, { idleMs: 1500, env: { USER_SYNC_DEBOUNCE_MS: '100' } });
const api = gw.call;

type Event = proto.temporal.api.history.v1.IHistoryEvent;
const text = (p: proto.temporal.api.common.v1.IPayload | null | undefined) => (p ? defaultPayloadConverter.fromPayload<string>(p) : undefined);

/** Every event of every run of a workflow id, oldest first. */
async function events(workflowId: string): Promise<Event[]> {
  const all: Event[] = [];
  const runs: string[] = [];
  for await (const e of temporal.client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) runs.push(e.runId);
  for (const runId of runs.reverse()) all.push(...((await temporal.client.workflow.getHandle(workflowId, runId).fetchHistory()).events ?? []));
  return all;
}

const activitySummaries = (es: Event[]) =>
  es.filter((e) => e.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED).map((e) => text(e.userMetadata?.summary));
/** Each step named in the activities' summaries (an activity applying several steps lists them, separated by "; "). */
const stepSummaries = (es: Event[]) => activitySummaries(es).flatMap((s) => s?.split('; ') ?? []);
const timerSummaries = (es: Event[]) => es.filter((e) => e.eventType === EventType.EVENT_TYPE_TIMER_STARTED).map((e) => text(e.userMetadata?.summary));

let adaId = '';

t.test('setup: a SCIM target, an entitlement there, a rule; ada joins Engineering', async () => {
  await api('PUT', '/api/connectors/demo', { id: 'demo', type: 'scim', config: { baseUrl: target.baseUrl, token: 'env:OPERATOR_VIEW_TARGET_TOKEN' } });
  await api('POST', '/api/entitlements', { connectorId: 'demo', name: 'engineering', target: { group: 'Engineering', create: true }, membership: 'authoritative' }, 201);
  const group = await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Engineering' }, 201);
  await api('POST', '/api/rules', { name: 'engineering', group: 'Engineering', entitlements: ['demo/engineering'] }, 201);
  const ada = await api('POST', '/scim/v2/Users', userBody('ada@example.com'), 201);
  adaId = ada.id;
  await api('PATCH', `/scim/v2/Groups/${group.id}`, { schemas: [PATCH], Operations: [{ op: 'add', path: 'members', value: [{ value: ada.id }] }] });
  await eventually(async () => {
    const remote = target.findUserByName('ada@example.com');
    const eng = target.findGroupByName('Engineering');
    return remote && (eng?.members as Array<{ value: string }> | undefined)?.some((m) => m.value === remote.id);
  }, 60_000, 'ada in Engineering in the target');
});

t.test('the Temporal UI names the user, each step, each timer and what was done', async (t) => {
  const workflowId = userSyncWorkflowId(adaId);
  const handle = temporal.client.workflow.getHandle(workflowId);
  const result = await handle.result();
  t.ok(result.lastSync?.length, `the workflow's result says what its last sync did: ${JSON.stringify(result)}`);
  const metadata = await handle.query<{ currentDetails?: string }>('__temporal_workflow_metadata');
  t.match(metadata.currentDetails, /^change \d+/, `its current details say what the last sync did: ${metadata.currentDetails}`);
  t.equal(await (await handle.describe()).staticSummary(), 'sync ada@example.com', 'the workflow is listed by userName');
  t.match(await (await handle.describe()).staticDetails(), /ada@example\.com/, 'its details name the user');

  const es = await eventually(async () => {
    const all = await events(workflowId);
    return stepSummaries(all).includes('grant demo/engineering (rule engineering) to ada@example.com') ? all : undefined;
  }, 30_000, 'the grant in the history');
  const summaries = activitySummaries(es);
  const steps = stepSummaries(es);
  t.ok(steps.includes('create account ada@example.com in demo'), `activity summaries: ${JSON.stringify(summaries)}`);
  t.ok(steps.includes('grant demo/engineering (rule engineering) to ada@example.com'), `activity summaries: ${JSON.stringify(summaries)}`);
  t.ok(summaries.every((s) => typeof s === 'string' && s.length > 0), `every activity has a summary: ${JSON.stringify(summaries)}`);
  const timers = timerSummaries(es);
  t.ok(timers.some((s) => s?.startsWith('debounce')), `a debounce timer says so: ${JSON.stringify(timers)}`);
  t.ok(timers.some((s) => s?.startsWith('idle')), `the idle timer says so: ${JSON.stringify(timers)}`);

  const results = es
    .filter((e) => e.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED)
    .map((e) => defaultPayloadConverter.fromPayload<unknown>(e.activityTaskCompletedEventAttributes!.result!.payloads![0]!));
  // A step's result says what it did; several steps in one activity, one line each, in order.
  const done = results.flatMap((r) => [(r as { done?: string | string[] }).done ?? []].flat());
  t.ok(done.some((d) => d.startsWith('created account ada@example.com in demo')), `a result says the account was created: ${JSON.stringify(results)}`);
  t.ok(done.includes('granted demo/engineering to ada@example.com'), `a result says what was granted: ${JSON.stringify(results)}`);
  t.ok(
    done.findIndex((d) => d.startsWith('created account ada@example.com')) < done.indexOf('granted demo/engineering to ada@example.com'),
    'the account before its membership',
  );
});

t.test('a failing target: the step is retried, and the API shows which step, its error, attempt and next attempt', async (t) => {
  target.failNext(10_000, { status: 503, detail: 'demo target is down for maintenance' });
  await api('PATCH', `/scim/v2/Users/${adaId}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { active: false } }] });

  // By userName as well as by id.
  const status = await eventually(async () => {
    const rows = await api('GET', '/api/users/ada@example.com/provisioning');
    const demo = rows.find((r: { connectorId: string }) => r.connectorId === 'demo');
    return demo?.retrying?.attempt >= 3 ? demo : undefined;
  }, 60_000, 'the revoke to be retried twice');
  t.equal(status.retrying.step, 'revokeEntitlement', 'the failing step');
  t.equal(status.retrying.summary, 'revoke demo/engineering from ada@example.com (user deprovisioned)', 'the step in words');
  t.match(status.retrying.lastError, 'demo target is down for maintenance', "the target's own error text");
  t.match(status.lastError, 'demo target is down for maintenance', 'the account shows the last error while retrying');
  t.equal(status.retrying.maximumAttempts, 0, 'retried until the target answers, not a fixed number of times');
  t.ok(status.retrying.nextAttemptAt === null || !Number.isNaN(Date.parse(status.retrying.nextAttemptAt)), 'the next attempt is a time (or running now)');
  t.ok(await eventually(async () => {
    const rows = await api('GET', `/api/users/${adaId}/provisioning`);
    return rows[0]?.retrying?.nextAttemptAt;
  }, 60_000, 'a moment between attempts'), 'the next attempt time shows between attempts');

  // The workflow page in the Temporal UI shows the same: the pending step and its last failure.
  const desc = await temporal.client.workflow.getHandle(userSyncWorkflowId(adaId)).describe();
  const pending = desc.raw.pendingActivities ?? [];
  t.match(pending[0]?.lastFailure?.message, 'demo target is down for maintenance', 'the pending activity carries the target error');

  target.clearFailures();
  await eventually(async () => {
    const rows = await api('GET', `/api/users/${adaId}/provisioning`);
    return rows[0]?.state === 'disabled' && rows[0].retrying === null && rows[0].lastError === null ? rows : undefined;
  }, 120_000, 'the target to come back and the account to be disabled');
  t.equal(target.findUserByName('ada@example.com')?.active, false, 'the account is disabled in the target');
});

t.test('names are accepted wherever ids are', async (t) => {
  await api('PATCH', `/scim/v2/Users/${adaId}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { active: true } }] });
  const byName = await eventually(async () => {
    const rows = await api('GET', '/api/grants?entitlementId=demo/engineering');
    return rows.length ? rows : undefined;
  }, 30_000, "ada's rule grant to come back");
  t.same(byName.map((g: { userName: string }) => g.userName), ['ada@example.com'], 'entitlement by connectorId/name');
  const byUser = await api('GET', '/api/grants?userId=ada@example.com');
  t.same(byUser.map((g: { entitlement: string }) => g.entitlement), ['engineering'], 'user by userName');
  const missing = await gw.scim({ method: 'GET', url: '/api/grants?entitlementId=demo/nope' });
  t.equal(missing.statusCode, 404, 'an unknown name is a 404, not a validation error');
  t.match(missing.json().message, 'no entitlement demo/nope');
  await api('POST', '/api/entitlements', { connectorId: 'demo', name: 'unused', target: { group: 'Unused' } }, 201);
  await api('DELETE', `/api/entitlements/${encodeURIComponent('demo/unused')}`, undefined, 204);
  const until = new Date(Date.now() + 3_600_000);
  await api('POST', '/api/grants', { userId: 'ada@example.com', entitlement: 'demo/engineering', validUntil: until.toISOString() }, 201);
  // The workflow now waits for that moment, and its timer says so.
  const timer = `access to demo/engineering ends ${until.toISOString()} (manual grant)`;
  await eventually(async () => timerSummaries(await events(userSyncWorkflowId(adaId))).includes(timer), 30_000, `a timer "${timer}"`);
  t.pass('the timer of time-bound access says when it ends');
});

t.test('reconciliation names what it found and says what it did', async (t) => {
  await eventually(async () => {
    const rows = await api('GET', `/api/users/${adaId}/provisioning`);
    return rows[0]?.state === 'active' && rows[0].retrying === null;
  }, 60_000, 'ada to be active again');
  target.seedUser({ userName: 'mallory@example.com' });
  const result = await api('POST', '/api/connectors/demo/reconcile', { dryRun: true });
  const orphan = result.sample.find((d: { kind: string }) => d.kind === 'orphanAccount');
  t.ok(orphan, `an orphan is reported: ${JSON.stringify(result.sample)}`);
  t.equal(orphan.remoteUserName, 'mallory@example.com', 'the orphan is named');
  t.match(orphan.found, /mallory@example\.com/, 'what was found, by name');
  t.match(orphan.done, /reported/, 'what was done');

  const drift = await api('GET', '/api/connectors/demo/drift');
  t.ok(
    drift.drift.some((d: { remoteUserName: string; found: string }) => d.remoteUserName === 'mallory@example.com' && d.found.includes('mallory@example.com')),
    `the drift listing names the orphan too: ${JSON.stringify(drift.drift)}`,
  );

  const es = await events(reconcileWorkflowId('demo'));
  const handle = temporal.client.workflow.getHandle(reconcileWorkflowId('demo'));
  t.match(await (await handle.describe()).staticSummary(), /^reconcile demo \(dry run/, 'the reconcile workflow says what it is');
  const summaries = activitySummaries(es);
  t.ok(summaries.includes('read accounts in demo, page 1'), `activity summaries: ${JSON.stringify(summaries)}`);
  t.ok(summaries.includes('read holders of demo/engineering in demo, page 1'), `activity summaries: ${JSON.stringify(summaries)}`);
  t.ok(summaries.some((s) => s?.startsWith('compare demo with the directory')), `activity summaries: ${JSON.stringify(summaries)}`);
});

t.test('a refused step: the target’s text is in the workflow’s details and the account’s last error', async (t) => {
  target.failNext(1, { status: 403, detail: 'policy forbids changing ada' });
  await api('PATCH', `/scim/v2/Users/${adaId}`, { schemas: [PATCH], Operations: [{ op: 'replace', path: 'displayName', value: 'Ada L.' }] });
  const row = await eventually(async () => {
    const rows = await api('GET', `/api/users/${adaId}/provisioning`);
    return rows[0]?.lastError?.includes('policy forbids changing ada') ? rows[0] : undefined;
  }, 60_000, 'the refusal to be recorded');
  t.equal(row.retrying, null, 'a permanent refusal is not retried');
  const details = await eventually(async () => {
    const metadata = await temporal.client.workflow.getHandle(userSyncWorkflowId(adaId)).query<{ currentDetails?: string }>('__temporal_workflow_metadata');
    return metadata.currentDetails?.includes('policy forbids changing ada') ? metadata.currentDetails : undefined;
  }, 30_000, 'the workflow details to show the refusal');
  t.match(details, /FAILED to update account ada@example\.com in demo: .*policy forbids changing ada/, `the workflow page says which step failed and why: ${details}`);
});

t.test('an account gone from the target: reconciliation says whose it was and what it does about it', async (t) => {
  const remote = target.findUserByName('ada@example.com')!;
  target.users.delete(remote.id);
  const result = await api('POST', '/api/connectors/demo/reconcile', { wait: true });
  const missing = result.sample.find((d: { kind: string }) => d.kind === 'missingAccount');
  t.ok(missing, `the missing account is reported: ${JSON.stringify(result.sample)}`);
  t.equal(missing.userName, 'ada@example.com', 'named by userName');
  t.match(missing.found, /demo no longer has the account of ada@example\.com/, 'what was found');
  t.match(missing.done, /creates it again/, 'what is done about it: ada is active, so the account comes back');
  await eventually(async () => target.findUserByName('ada@example.com'), 60_000, "ada's account to be created again");
});
