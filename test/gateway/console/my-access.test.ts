/**
 * The console's My access and Tasks pages over HTTP (app.inject with the session cookie of the local
 * sign-in), on PostgreSQL, the Temporal dev server with a worker and an in-memory SCIM target:
 * extending and releasing access (the target loses it, audited; the REST release too), cancelling a
 * pending request, claiming and completing manual tasks with the same rules as the REST API (a
 * forged form by someone outside the fulfilment group is 403), CSRF refusals, and paging.
 */
import { fileURLToPath } from 'node:url';
import t from 'tap';
import type { LightMyRequestResponse } from 'fastify';
import { userBody } from '../../helpers/gateway.js';
import { eventually } from '../../helpers/temporal.js';
import { startTestStack } from '../../helpers/stack.js';
import { memoryTarget } from '../../fixtures/memory-connector.js';
import { createToken } from '../../../core/auth/tokens.js';
import { findPolicy } from '../../../core/access/policies.js';
import { getRequest, type AccessRequestView } from '../../../core/access/requests.js';
import { getTask } from '../../../core/access/tasks.js';
import { accessRequestWorkflowId } from '../../../workflows/client.js';

const PLUGIN = fileURLToPath(new URL('../../fixtures/memory-connector.ts', import.meta.url));
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

const { database, temporal, gw } = await startTestStack(t, { idleMs: 1000, consoleLocalSignIn: true });
const { app } = gw;
const api = gw.call;
const ns = `my-access-${temporal.taskQueue}`;
const target = memoryTarget(ns);

await api('PUT', '/api/connectors/memory', { id: 'memory', type: PLUGIN, config: { namespace: ns } }, 200);
await api('POST', '/api/entitlements', { connectorId: 'memory', name: 'prod-db', target: { group: 'prod-db' } }, 201);

const ids: Record<string, string> = {};
for (const name of ['ria', 'ben', 'fay', 'gus', 'hal', 'pat', 'quinn']) ids[name] = (await api('POST', '/scim/v2/Users', userBody(`${name}@example.com`), 201)).id as string;
await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Helpdesk', members: [{ value: ids.fay }, { value: ids.gus }] }, 201);

await api(
  'PUT',
  '/api/access-policies/prod-db',
  { entitlement: 'memory/prod-db', displayName: 'Production database', durations: { defaultSeconds: 600, maxSeconds: 3600 }, fulfilment: { mode: 'automatic' }, stages: [{ approvers: { users: ['ben@example.com'] } }] },
  201,
);
await api(
  'PUT',
  '/api/access-policies/laptop',
  {
    displayName: 'Laptop admin rights',
    durations: { defaultSeconds: 3600, maxSeconds: 7200 },
    fulfilment: { mode: 'manual', group: 'Helpdesk', instructions: 'MDM: local admins <group>' },
    stages: [{ approvers: { users: ['ben@example.com'] } }],
  },
  201,
);

interface Person {
  session: string;
  csrf: string;
}

/** Signs `name` in through the local sign-in form, as a browser would. */
async function signIn(name: string): Promise<Person> {
  const form = await app.inject({ url: '/console' });
  const token = /name="_csrf" value="([^"]+)"/.exec(form.body)![1]!;
  const pre = form.cookies.find((c) => c.name === 'console_csrf')!.value;
  const res = await app.inject({ method: 'POST', url: '/console/login/local', payload: `userId=${ids[name]}&_csrf=${token}`, headers: FORM, cookies: { console_csrf: pre } });
  if (res.statusCode !== 303) throw new Error(`sign-in of ${name}: ${res.statusCode}`);
  const session = res.cookies.find((c) => c.name === 'console_session')!.value;
  const page = await app.inject({ url: '/console/catalogue', cookies: { console_session: session } });
  return { session, csrf: /action="\/console\/logout"><input type="hidden" name="_csrf" value="([^"]+)"/.exec(page.body)![1]! };
}

const people: Record<string, Person> = {};
for (const name of ['ria', 'ben', 'fay', 'gus', 'hal', 'pat', 'quinn']) people[name] = await signIn(name);

async function get(who: string, url: string): Promise<LightMyRequestResponse> {
  return await app.inject({ url, cookies: { console_session: people[who]!.session } });
}

/** Posts a form as `who`, with the session's CSRF token unless `csrf` is false. */
async function post(who: string, url: string, fields: Record<string, string> = {}, csrf = true): Promise<LightMyRequestResponse> {
  const payload = new URLSearchParams({ ...(csrf ? { _csrf: people[who]!.csrf } : {}), ...fields }).toString();
  return await app.inject({ method: 'POST', url, payload, headers: FORM, cookies: { console_session: people[who]!.session } });
}

const cards = (body: string) => body.split('<article class="card"').length - 1;
const view = async (id: string) => (await getRequest(database.db, id))!;

async function settled(id: string, wanted: AccessRequestView['status']): Promise<AccessRequestView> {
  return await eventually(async () => {
    const r = await view(id);
    return r.status === wanted ? r : undefined;
  }, 60_000, `request ${id} to be ${wanted}`);
}

/** `who` asks for `policy` in the console, ben approves it in his inbox; answers the request id. */
async function requestedAndApproved(who: string, url: string, fields: Record<string, string>, inboxSeen?: (inbox: string) => void): Promise<string> {
  const made = await post(who, url, fields);
  if (made.statusCode !== 303) throw new Error(`request: ${made.statusCode} ${made.body}`);
  const id = /created=([0-9a-f-]{36})/.exec(made.headers.location as string)![1]!;
  const inbox = await eventually(async () => {
    const body = (await get('ben', '/console/inbox')).body;
    return body.includes(`/console/requests/${id}/decision`) ? body : undefined;
  }, 30_000, 'the request in ben’s inbox');
  inboxSeen?.(inbox);
  const decided = await post('ben', `/console/requests/${id}/decision`, { decision: 'approve' });
  if (decided.statusCode !== 303) throw new Error(`decision: ${decided.statusCode}`);
  return id;
}

t.test('my access: extend automatic access, then release it; the target loses it and the release is audited', async (t) => {
  const empty = await get('ria', '/console/access');
  t.equal(empty.statusCode, 200);
  t.match(empty.body, 'You hold no access from requests or grants right now', 'the empty page says what to do next');
  t.match(empty.body, 'href="/console/access"', 'the navigation has My access');
  t.match(empty.body, 'href="/console/tasks"', 'and Tasks');

  const id = await requestedAndApproved('ria', '/console/requests', { policy: 'prod-db', hours: '', justification: 'incident 42' });
  const granted = await settled(id, 'fulfilled');
  t.ok(target.groups.get('prod-db')?.has(`acct-${ids.ria}`), 'the access is in the target');

  const mine = await get('ria', '/console/access');
  t.match(mine.body, '<h2 id="a-' + id + '">Production database</h2>', 'the access is listed');
  t.match(mine.body, 'memory/prod-db');
  t.match(mine.body, 'incident 42', 'with why');
  t.match(mine.body, `action="/console/access/${id}/extend"`, 'time-bound access can be extended');
  t.match(mine.body, `action="/console/access/${id}/release"`, 'and released');
  t.match(mine.body, /<label for="a-[^"]+-hours">/, 'every input has a label');

  t.equal((await post('hal', `/console/access/${id}/extend`, { hours: '1' })).statusCode, 404, "someone else's access cannot be extended");
  t.equal((await post('ria', `/console/access/${id}/extend`, { hours: 'x' })).statusCode, 400, 'a bad duration is a page saying so');
  const tooLong = await post('ria', `/console/access/${id}/extend`, { hours: '9' });
  t.equal(tooLong.statusCode, 400, 'longer than the policy allows');
  t.match(tooLong.body, 'at most 3600 s');
  t.equal((await post('ria', `/console/access/${id}/extend`, { hours: '1' }, false)).statusCode, 403, 'without the CSRF token nothing is requested');

  const ext = await requestedAndApproved('ria', `/console/access/${id}/extend`, { hours: '1', justification: 'still on it' }, (inbox) =>
    t.match(inbox, /<dt>Current access<\/dt><dd>memory\/prod-db<\/dd>/, "the approver sees what the requester holds already"),
  );
  const extView = await settled(ext, 'fulfilled');
  t.equal(extView.extends, id, 'an extension of the running access, made through the same path as POST /api/requests');
  t.equal(extView.durationSeconds, 3600);
  const { rows: grants } = await database.db.query<{ id: string; valid_from: Date; valid_until: Date }>('SELECT id, valid_from, valid_until FROM grants WHERE id = ANY($1::uuid[])', [[granted.grantId, extView.grantId]]);
  t.equal(grants.find((g) => g.id === extView.grantId)!.valid_from.getTime(), grants.find((g) => g.id === granted.grantId)!.valid_until.getTime(), 'the extension starts where the access ends');
  const both = await get('ria', '/console/access');
  t.equal(cards(both.body), 2, 'the access and its extension');
  t.match(both.body, '<dt>Starts</dt>', 'the extension says when it starts');

  const forged = await post('hal', `/console/access/${id}/release`);
  t.equal(forged.statusCode, 403, "someone else's access cannot be released");
  t.match(forged.body, 'only the requester can release their access');
  t.equal((await post('ria', `/console/access/${id}/release`, {}, false)).statusCode, 403, 'a release without the CSRF token is refused');
  t.equal((await view(id)).status, 'fulfilled', 'and changes nothing');

  const released = await post('ria', `/console/access/${id}/release`, { reason: 'done early' });
  t.equal(released.statusCode, 303);
  t.equal(released.headers.location, `/console/access?released=${id}`);
  const after = await view(id);
  t.equal(after.status, 'revoked');
  t.equal(after.reason, 'released by the requester: done early');
  t.equal((await view(ext)).status, 'revoked', 'the extension holds the same access and ends with it');
  t.equal((await view(ext)).reason, `revoked with request ${id}: released by the requester: done early`);
  const { rows: ended } = await database.db.query<{ status: string }>('SELECT status FROM grants WHERE id = ANY($1::uuid[])', [[granted.grantId, extView.grantId]]);
  t.same(ended.map((g) => g.status), ['ended', 'ended'], 'both grants end');
  await eventually(async () => !target.groups.get('prod-db')?.has(`acct-${ids.ria}`), 30_000, 'the access to be removed from the target');

  const { rows: audit } = await database.db.query<{ action: string; actor: string; reason: string; after: { via?: string; with?: string } }>(
    `SELECT action, actor, reason, after FROM audit_events WHERE resource_id = ANY($1::text[]) AND action IN ('access-request.released', 'access-request.revoked', 'grant.ended') ORDER BY id`,
    [[id, ext, granted.grantId, extView.grantId]],
  );
  t.same(
    audit.map((e) => [e.action, e.actor]),
    [
      ['grant.ended', 'ria@example.com'],
      ['grant.ended', 'ria@example.com'],
      ['access-request.released', 'ria@example.com'],
      ['access-request.revoked', 'ria@example.com'],
    ],
    'the release is audited: who, each grant that ended, the request and its extension',
  );
  t.equal(audit[2]!.after.via, 'console', 'with the front end used');
  t.equal(audit[3]!.after.with, id);

  const page = await get('ria', `/console/access?released=${id}`);
  t.match(page.body, 'You released Production database. It is being removed from the system that holds it.');
  t.match(page.body, 'You hold no access from requests or grants right now');
  const again = await post('ria', `/console/access/${id}/release`);
  t.equal(again.statusCode, 409, 'released already');
  t.match(again.body, 'holds no running access to release');
});

t.test('tasks: claim, done and failed as on the REST API; forged forms by others are refused; release of access given by hand', async (t) => {
  const nothing = await get('hal', '/console/tasks');
  t.equal(nothing.statusCode, 200);
  t.match(nothing.body, 'No task is waiting for you', 'someone outside every fulfilment group sees an empty page that says why');

  const id = await requestedAndApproved('ria', '/console/requests', { policy: 'laptop', hours: '1' });
  const task = await eventually(async () => (await view(id)).tasks.find((x) => x.kind === 'grant'), 30_000, 'the grant task');

  const fays = await get('fay', '/console/tasks');
  t.match(fays.body, 'Give: Laptop admin rights');
  t.match(fays.body, 'MDM: local admins &lt;group&gt;', 'the instructions, escaped');
  t.match(fays.body, `action="/console/tasks/${task.id}/claim"`);
  t.match(fays.body, `<label for="t-${task.id}-note">`, 'the note has a label');

  const outsider = await post('hal', `/console/tasks/${task.id}/claim`);
  t.equal(outsider.statusCode, 403, 'someone outside the fulfilment group cannot claim by forging the form');
  t.match(outsider.body, 'not a member of the fulfilment group of this task');
  t.equal((await post('hal', `/console/tasks/${task.id}/complete`, { outcome: 'done' })).statusCode, 403, 'nor report it done');
  t.equal((await post('fay', `/console/tasks/${task.id}/claim`, {}, false)).statusCode, 403, 'a claim without the CSRF token is refused');
  t.equal((await getTask(database.db, task.id))!.task.status, 'open', 'the task is untouched');

  const claimed = await post('fay', `/console/tasks/${task.id}/claim`);
  t.equal(claimed.statusCode, 303);
  t.match((await get('fay', claimed.headers.location as string)).body, 'claimed by you');
  t.match((await get('gus', '/console/tasks')).body, 'fay@example.com claimed this task', 'the others see who claimed it');
  t.equal((await post('gus', `/console/tasks/${task.id}/claim`)).statusCode, 409, 'a claimed task cannot be claimed again');
  const notGus = await post('gus', `/console/tasks/${task.id}/complete`, { outcome: 'done' });
  t.equal(notGus.statusCode, 403, 'a task claimed by someone else cannot be completed');
  t.match(notGus.body, 'the task is claimed by fay@example.com');
  t.equal((await post('fay', `/console/tasks/${task.id}/complete`, { outcome: 'maybe' })).statusCode, 400, 'done or failed only');

  const done = await post('fay', `/console/tasks/${task.id}/complete`, { outcome: 'done', note: 'added via MDM' });
  t.equal(done.statusCode, 303);
  t.equal(done.headers.location, '/console/tasks?done=done');
  const given = await settled(id, 'fulfilled');
  t.equal(given.reason, 'added via MDM', 'the note reaches the requester');
  t.match((await get('fay', '/console/tasks')).body, 'No task is waiting for you', 'the task is gone from the list');

  const { rows: refusals } = await database.db.query<{ actor: string; after: { attempt: string } }>(
    `SELECT actor, after FROM audit_events WHERE action = 'access-task.refused' AND resource_id = $1 ORDER BY id`,
    [task.id],
  );
  t.same(
    refusals.map((r) => `${r.actor} ${r.after.attempt}`),
    ['hal@example.com claim', 'hal@example.com complete', 'gus@example.com claim', 'gus@example.com complete'],
    'each refused attempt is audited as on the REST API',
  );

  const access = await get('ria', '/console/access');
  t.match(access.body, 'Laptop admin rights');
  t.match(access.body, 'given by hand by the fulfilment group');

  // Released over REST: the same core path; the fulfilment group gets the task to take it away.
  const handle = temporal.client.workflow.getHandle(accessRequestWorkflowId(id));
  const details = async () => (await handle.query<{ currentDetails: string }>('__temporal_workflow_metadata')).currentDetails;
  await eventually(async () => (await details()).startsWith('fulfilled: access until'), 30_000, 'the workflow to follow the access');
  const token = (await createToken(database.db, 'personal-ria', ['requests'], undefined, ids.ria)).token;
  const hal = (await createToken(database.db, 'personal-hal', ['requests'], undefined, ids.hal)).token;
  const release = (tok: string, body: unknown) =>
    gw.scim({ method: 'POST', url: `/api/requests/${id}/release`, token: tok, headers: { 'content-type': 'application/json' }, payload: body as object });
  t.equal((await release(hal, {})).statusCode, 404, 'someone who cannot see the request gets 404');
  const res = await release(token, { reason: 'no longer needed' });
  t.equal(res.statusCode, 200, res.body);
  t.equal(res.json<{ status: string }>().status, 'revoked');
  const revokeTask = await eventually(async () => (await view(id)).tasks.find((x) => x.kind === 'revoke'), 30_000, 'the revocation task');
  t.match((await get('gus', '/console/tasks')).body, 'Take away: Laptop admin rights', 'the fulfilment group sees the task to take it away');
  t.equal((await release(token, {})).statusCode, 409, 'released already');
  const { rows: audit } = await database.db.query<{ actor: string; reason: string; after: { via: string } }>(
    `SELECT actor, reason, after FROM audit_events WHERE action = 'access-request.released' AND resource_id = $1`,
    [id],
  );
  t.same(audit.map((e) => [e.actor, e.reason, e.after.via]), [['ria@example.com', 'released by the requester: no longer needed', 'personal-ria']], 'audited once, with the token used');

  // Reported failed by an assignee who did not claim it (an open task needs no claim).
  const failed = await post('gus', `/console/tasks/${revokeTask.id}/complete`, { outcome: 'failed', note: 'device offline' });
  t.equal(failed.statusCode, 303);
  t.equal(failed.headers.location, '/console/tasks?done=failed');
  t.match((await get('gus', failed.headers.location as string)).body, 'The task is recorded as failed');
  t.equal((await getTask(database.db, revokeTask.id))!.task.status, 'failed');
  t.equal((await getTask(database.db, revokeTask.id))!.task.note, 'device offline');
});

t.test('a pending request of your own is cancelled from My requests', async (t) => {
  const bad = await post('ria', '/console/requests', { policy: 'laptop', hours: '1.5' });
  t.equal(bad.statusCode, 400, 'a duration that is not whole hours is a page saying so');
  t.match(bad.body, 'The duration must be a whole number of hours.');
  const made = await post('ria', '/console/requests', { policy: 'laptop' });
  const id = /created=([0-9a-f-]{36})/.exec(made.headers.location as string)![1]!;
  const list = await get('ria', '/console/requests');
  t.match(list.body, `action="/console/requests/${id}/cancel"`, 'a pending request has a cancel button');
  t.equal((await post('hal', `/console/requests/${id}/cancel`)).statusCode, 404, "someone else's request cannot be cancelled");
  t.equal((await post('ria', `/console/requests/${id}/cancel`, {}, false)).statusCode, 403, 'a cancellation without the CSRF token is refused');
  const cancelled = await post('ria', `/console/requests/${id}/cancel`);
  t.equal(cancelled.statusCode, 303);
  t.equal(cancelled.headers.location, `/console/requests?cancelled=${id}`);
  t.equal((await view(id)).status, 'cancelled');
  t.match((await get('ria', cancelled.headers.location as string)).body, 'Your request for Laptop admin rights is cancelled.');
  const again = await post('ria', `/console/requests/${id}/cancel`);
  t.equal(again.statusCode, 409, 'a request that is not pending cannot be cancelled');
  t.match(again.body, 'the request is cancelled');
});

t.test('paging: 50 per page with next and previous links on My requests, My access and Tasks', async (t) => {
  const policy = (await findPolicy(database.db, 'laptop'))!;
  // 55 closed requests of pat's (and a task each for quinn), 55 grants of pat's: newest first, oldest first for tasks.
  const { rows: made } = await database.db.query<{ id: string }>(
    `INSERT INTO access_requests (id, policy_id, policy, requester_id, justification, status, created_by, created_at)
     SELECT gen_random_uuid(), $1, $2, $3, 'paging-' || n || '-end', 'rejected', 'test', now() - n * interval '1 minute' FROM generate_series(1, 55) n RETURNING id`,
    [policy.id, JSON.stringify(policy), ids.pat],
  );
  t.equal(made.length, 55);
  await database.db.query(
    `INSERT INTO access_tasks (id, request_id, kind, assignee_ids, instructions, created_at)
     SELECT gen_random_uuid(), r.id, 'grant', ARRAY[$2::uuid], r.justification, r.created_at FROM access_requests r WHERE r.requester_id = $1`,
    [ids.pat, ids.quinn],
  );
  const { rows: ent } = await database.db.query<{ id: string }>(`SELECT id FROM entitlements WHERE name = 'prod-db'`);
  await database.db.query(
    `INSERT INTO grants (id, user_id, entitlement_id, reason, valid_from) SELECT gen_random_uuid(), $1, $2, 'paging-' || n || '-end', now() - n * interval '1 minute' FROM generate_series(1, 55) n`,
    [ids.pat, ent[0]!.id],
  );

  for (const [who, path, first, last] of [
    ['pat', '/console/requests', 1, 55],
    ['pat', '/console/access', 1, 55],
    ['quinn', '/console/tasks', 55, 1],
  ] as const) {
    const one = await get(who, path);
    t.equal(cards(one.body), 50, `${path}: 50 on the first page`);
    t.match(one.body, `href="${path}?page=2" rel="next">Next page`, `${path}: a link to the next page`);
    t.notMatch(one.body, 'rel="prev"', `${path}: none to a previous one`);
    t.match(one.body, `paging-${first}-end`, `${path}: in order`);
    t.notMatch(one.body, `paging-${last}-end`);
    const two = await get(who, `${path}?page=2`);
    t.equal(cards(two.body), 5, `${path}: the rest on the second`);
    t.match(two.body, `href="${path}?page=1" rel="prev">Previous page`);
    t.notMatch(two.body, 'rel="next"');
    t.match(two.body, `paging-${last}-end`);
    const three = await get(who, `${path}?page=3`);
    t.match(three.body, `There is nothing on page 3. <a href="${path}">Go to the first page</a>`, `${path}: past the end, a way back`);
    t.equal((await get(who, `${path}?page=abc`)).statusCode, 200, `${path}: a bad page number is the first page`);
  }
});
