/**
 * Invitation requests end to end, on real PostgreSQL, the Temporal dev server with a worker, and the
 * HTTPS fake Auth0 tenant: a sponsor asks for access for an email that is not in the directory;
 * the policy's stages approve it (the sponsor's manager, then the security group); the workflow
 * invites the email through core/invitations with the request as idempotency key (once, also when
 * the activity is retried because the delivery channel failed), the link reaches the signed
 * delivery webhook, and the shipped post-login Action redeems it at the first login: the grant is
 * there and the request fulfilled. A rejected request invites nobody; people the policy does not
 * allow are refused with clear API errors; a revoked invitation revokes its request; an invitation
 * that expires unredeemed expires its request.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';
import { underTestCa } from '../connectors/auth0/test-ca.js';

const tls = await underTestCa(import.meta.url);
const { default: t } = await import('tap');
const { NativeConnection } = await import('@temporalio/worker');
const { startFakeAuth0, ALL_SCOPES } = await import('../connectors/auth0/fake-auth0.js');
const { startTestStack } = await import('../helpers/stack.js');
const { eventually, workflowBundle } = await import('../helpers/temporal.js');
const { EventType } = await import('../helpers/history.js');
const { userBody } = await import('../helpers/gateway.js');
const { createToken } = await import('../../core/auth/tokens.js');
const { createWorker } = await import('../../workflows/worker.js');
const { accessRequestWorkflowId } = await import('../../workflows/client.js');
const { accessRequestStateQuery, invitationSettledSignal } = await import('../../workflows/access-request-messages.js');
const { createWebhookAccessNotifier } = await import('../../core/access/notifier.js');
const { invitationNotifierFor } = await import('../../core/invitations/invitations.js');
const { inviteForRequest } = await import('../../workflows/activities/access-requests.js');
const { startNoticeReceiver } = await import('../core/delivery/notice-receiver.js');

type PostLogin = (event: unknown, api: unknown) => Promise<void>;
const action = createRequire(import.meta.url)('../../connectors/auth0/actions/redeem-invitation.js') as { onExecutePostLogin: PostLogin };
const PLUGIN = fileURLToPath(new URL('../fixtures/memory-connector.ts', import.meta.url));

type Json = Record<string, unknown> & { [key: string]: any }; // eslint-disable-line @typescript-eslint/no-explicit-any -- answers and notices are inspected freely

const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const ENTERPRISE = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';
const SECRET = 'invite-request-client-secret-0123456789';
const ACTION_SECRET = 'invite-request-action-secret-0123456789ab';
const WEBHOOK_SECRET = 'invite-request-webhook-secret-012345678';
const CONNECTION = 'Username-Password-Authentication';
process.env.AUTH0_INVITE_REQUEST_SECRET = SECRET;
process.env.AUTH0_INVITE_REQUEST_ACTION_SECRET = ACTION_SECRET;

const fake = await startFakeAuth0({ cert: tls.cert, key: tls.key });
t.teardown(() => fake.close());
fake.connections.add(CONNECTION);
fake.clients.set('source-app', { secret: SECRET, scopes: ALL_SCOPES });

// Invitation links and access notices go to two receivers (the same signed channel), so each can fail on its own.
const links = await startNoticeReceiver(t, WEBHOOK_SECRET);
const notices = await startNoticeReceiver(t, WEBHOOK_SECRET);

const stack = await startTestStack(t, { idleMs: 1000, worker: false, env: { DELIVERY_WEBHOOK_URL: links.url, DELIVERY_WEBHOOK_SECRET: WEBHOOK_SECRET, PUBLIC_URL: 'http://gateway.test' } });
const { database, gw } = stack;
const db = database.db;
const conn = await NativeConnection.connect({ address: stack.temporal.address });
const bundle = workflowBundle();
const worker = await createWorker({
  connection: conn,
  namespace: stack.temporal.namespace,
  taskQueue: stack.temporal.taskQueue,
  db: database.newPool(),
  accessNotifier: createWebhookAccessNotifier({ url: notices.url, secret: WEBHOOK_SECRET }),
  invitationNotify: invitationNotifierFor({ deliveryWebhookUrl: links.url, deliveryWebhookSecret: WEBHOOK_SECRET }),
  ...(bundle ? { workflowBundle: bundle } : {}),
});
const running = worker.run();
t.teardown(async () => {
  worker.shutdown();
  await running;
  await conn.close();
});
await gw.app.listen({ port: 0, host: '127.0.0.1' });
const gatewayUrl = `http://127.0.0.1:${(gw.app.server.address() as { port: number }).port}`;
const api = gw.call;

await db.query(`INSERT INTO sources (id, type, config) VALUES ('auth0-main', 'auth0', $1)`, [
  {
    domain: fake.domain,
    clientId: 'source-app',
    clientSecret: 'env:AUTH0_INVITE_REQUEST_SECRET',
    connection: CONNECTION,
    actionSecret: 'env:AUTH0_INVITE_REQUEST_ACTION_SECRET',
    invitationUrl: 'https://app.example.com/login',
  },
]);
await api('PUT', '/api/connectors/app', { id: 'app', type: PLUGIN, config: { namespace: 'access-invitations' } });
await api('POST', '/api/entitlements', { connectorId: 'app', name: 'editor', target: { group: 'editor' } }, 201);

const user = async (userName: string, extra: Record<string, unknown> = {}) => (await api('POST', '/scim/v2/Users', userBody(userName, extra), 201)).id as string;
const mark = await user('mark@example.com');
const maria = await user('maria@example.com', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:User', ENTERPRISE], [ENTERPRISE]: { manager: { value: mark } } });
const sam = await user('sam@example.com');
const oscar = await user('oscar@example.com', { emails: [{ value: 'oscar@example.com', primary: true }] });
await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Sponsors', members: [{ value: maria }] }, 201);
await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Security', members: [{ value: sam }] }, 201);

const tokens: Record<string, string> = {};
for (const [name, id] of Object.entries({ maria, mark, sam, oscar })) tokens[name] = (await createToken(db, `personal-${name}`, ['requests'], undefined, id)).token;

async function as(who: string, method: 'GET' | 'POST', url: string, payload?: unknown): Promise<{ status: number; body: Json }> {
  const res = await gw.scim({ method, url, token: tokens[who]!, ...(payload !== undefined ? { payload: payload as object, headers: { 'content-type': 'application/json' } } : {}) });
  return { status: res.statusCode, body: res.json() };
}

const policy = await api(
  'PUT',
  '/api/access-policies/contractor-editor',
  {
    entitlement: 'app/editor',
    displayName: 'Editor (contractors)',
    durations: { defaultSeconds: 86_400, maxSeconds: 604_800 },
    fulfilment: { mode: 'automatic' },
    stages: [
      { name: 'manager', approvers: { manager: 1 } },
      { name: 'security', approvers: { group: 'Security' }, autoApprove: 'userName eq "maria@example.com"' },
    ],
    invitation: { source: 'auth0-main', sponsors: { group: 'Sponsors' }, expiresInSeconds: 3 * 86_400 },
  },
  201,
);
await api('PUT', '/api/access-policies/plain-editor', { entitlement: 'app/editor', displayName: 'Editor', durations: { defaultSeconds: 3600 }, fulfilment: { mode: 'automatic' }, stages: [{ approvers: { manager: 1 } }] }, 201);

const secrets = { GATEWAY_URL: gatewayUrl, GATEWAY_SOURCE: 'auth0-main', GATEWAY_ACTION_SECRET: ACTION_SECRET };

/** Runs the shipped post-login Action as Auth0 would for this user. */
async function login(auth0UserId: string, token: string): Promise<{ denied?: string }> {
  const u = fake.users.get(auth0UserId)!;
  const out: { denied?: string } = {};
  const apiObject = { access: { deny: (reason: string) => ((out.denied = reason), apiObject) }, user: { setAppMetadata: () => apiObject } };
  await action.onExecutePostLogin({ user: { user_id: u.user_id, email: u.email, name: u.name, app_metadata: structuredClone(u.app_metadata) }, request: { query: { scim_invitation: token } }, secrets }, apiObject);
  return out;
}

/** Asks for an invitation as maria and has both stages approved; answers the request once invited. */
async function invitedRequest(t: Test, email: string): Promise<Json> {
  const made = await as('maria', 'POST', '/api/requests', { policy: 'contractor-editor', invitee: { email, displayName: 'A Contractor' }, justification: 'joins the project' });
  t.equal(made.status, 201, `the invitation request is made: ${made.body.message ?? ''}`);
  const id = made.body.id as string;
  await eventually(async () => (await as('mark', 'GET', '/api/approvals')).body.some((r: Json) => r.id === id), 60_000, "the request in the sponsor's manager's inbox");
  t.equal((await as('mark', 'POST', `/api/requests/${id}/decisions`, { decision: 'approve' })).status, 200);
  await eventually(async () => (await as('sam', 'GET', '/api/approvals')).body.some((r: Json) => r.id === id), 60_000, "the request in the security group's inbox");
  t.equal((await as('sam', 'POST', `/api/requests/${id}/decisions`, { decision: 'approve' })).status, 200);
  return await eventually(async () => {
    const r = await as('maria', 'GET', `/api/requests/${id}`);
    return r.body.status === 'invited' || r.body.status === 'failed' ? r.body : undefined;
  }, 90_000, 'the request to be invited');
}

t.test('a policy invites only with an entitlement, automatic fulfilment, an Auth0 source with an invitationUrl, and sponsors', async (t) => {
  t.match(policy.invitation, { sourceId: 'auth0-main', expiresInSeconds: 259_200 });
  const base = { entitlement: 'app/editor', displayName: 'x', fulfilment: { mode: 'automatic' }, stages: [] };
  const refused = async (body: object) => (await gw.scim({ method: 'PUT', url: '/api/access-policies/broken', payload: body, headers: { 'content-type': 'application/json' } })).json().message as string;
  t.match(await refused({ ...base, invitation: { source: 'nope', sponsors: { group: 'Sponsors' } } }), 'invitation.source: no source nope');
  t.match(await refused({ ...base, invitation: { source: 'auth0-main', sponsors: {} } }), 'invitation.sponsors');
  t.match(await refused({ displayName: 'x', fulfilment: { mode: 'manual', group: 'Security' }, stages: [], invitation: { source: 'auth0-main', sponsors: { group: 'Sponsors' } } }), 'give an entitlement and automatic fulfilment');
  t.match(await refused({ ...base, invitation: { source: 'auth0-main', sponsors: { group: 'Nobody' } } }), 'invitation.sponsors.group: no group Nobody');
});

t.test('requested, approved, invited once although the first delivery failed, redeemed at the first login: granted and fulfilled', async (t) => {
  // The first POST of the link fails: the activity is retried and carries on with the same invitation.
  links.failNext.push({ status: 503 });
  const linksBefore = links.notices.length;
  const request = await invitedRequest(t, 'New.Contractor@Example.com');
  t.equal(request.status, 'invited', request.reason);
  t.same(request.invitee, { email: 'new.contractor@example.com', displayName: 'A Contractor' });
  t.equal(request.requester, 'maria@example.com', 'the sponsor is the requester');
  t.same(request.stages.map((s: Json) => s.approvers), [[mark], [sam]], "the sponsor's manager approves the first stage; the second is not approved automatically for the sponsor");

  const { rows: invitations } = await db.query('SELECT id, delivery_token, delivery_error, new_user, grant_duration_s FROM invitations WHERE request_id = $1', [request.id]);
  t.equal(invitations.length, 1, 'one invitation for the request');
  const inv = invitations[0]!;
  t.equal(request.invitation.id, inv.id, 'the request records its invitation');
  t.equal(request.invitation.status, 'pending');
  t.equal(inv.delivery_token, null, 'the token is not kept once the link is delivered');
  t.equal(inv.delivery_error, null);
  t.equal(inv.grant_duration_s, 86_400, "the grant will last the request's duration");
  const inAuth0 = [...fake.users.values()].filter((u) => u.email === 'new.contractor@example.com');
  t.equal(inAuth0.length, 1, 'one Auth0 user');

  const history = await stack.temporal.client.workflow.getHandle(accessRequestWorkflowId(request.id)).fetchHistory();
  const scheduled = (history.events ?? []).filter((e) => e.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED && e.activityTaskScheduledEventAttributes?.activityType?.name === 'inviteRequested');
  t.equal(scheduled.length, 1, 'one invitation activity');
  const started = (history.events ?? []).find((e) => e.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED && e.activityTaskStartedEventAttributes?.scheduledEventId?.toString() === scheduled[0]!.eventId?.toString());
  t.equal(started?.activityTaskStartedEventAttributes?.attempt, 2, 'which ran twice: the first delivery failed');

  const sent = links.notices.slice(linksBefore).filter((n) => (n as unknown as Json).email === 'new.contractor@example.com') as unknown as Json[];
  t.equal(sent.length, 1, 'the link was delivered once');
  t.match(sent[0], { id: inv.id, type: 'invitation.created', source: 'auth0-main', entitlements: ['app/editor'] });
  t.ok(sent[0]!.passwordUrl, 'with a password ticket: the retry knew the Auth0 user was made for the invitation');
  await eventually(async () => notices.notices.some((n) => (n as unknown as Json).type === 'request.invited' && (n as unknown as Json).requestId === request.id), 30_000, 'the sponsor to be told');

  // The activity run again after it succeeded (a worker killed before the result was recorded): nothing new.
  const again = await inviteForRequest(db, invitationNotifierFor({ deliveryWebhookUrl: links.url, deliveryWebhookSecret: WEBHOOK_SECRET }), request.id, 1);
  t.match(again, { state: 'invited', invitationId: inv.id });
  t.equal((await db.query('SELECT count(*)::int AS n FROM invitations WHERE request_id = $1', [request.id])).rows[0].n, 1, 'still one invitation');
  t.equal([...fake.users.values()].filter((u) => u.email === 'new.contractor@example.com').length, 1, 'still one Auth0 user');
  t.equal(links.notices.filter((n) => n.id === inv.id).length, 1, 'no second link');

  const token = new URL(sent[0]!.url as string).searchParams.get('scim_invitation')!;
  t.equal((await login(inAuth0[0]!.user_id, token)).denied, undefined, 'the first login with the link goes through');
  const done = await eventually(async () => {
    const r = await as('maria', 'GET', `/api/requests/${request.id}`);
    return r.body.status !== 'invited' ? r.body : undefined;
  }, 30_000, 'the request to be fulfilled');
  t.equal(done.status, 'fulfilled', done.reason);
  t.equal(done.invitation.status, 'redeemed');
  const { rows: grants } = await db.query<{ id: string; reason: string; user_id: string; valid_from: Date; valid_until: Date; name: string }>(
    `SELECT g.id, g.reason, g.user_id, g.valid_from, g.valid_until, e.name FROM grants g JOIN entitlements e ON e.id = g.entitlement_id WHERE g.reason = $1 AND g.status = 'active'`,
    [`invitation:${inv.id}`],
  );
  t.equal(grants.length, 1, 'the grant comes from the redemption');
  t.equal(grants[0]!.name, 'editor');
  t.equal(done.grantId, grants[0]!.id, "the request's grant is the redemption's");
  t.equal(grants[0]!.user_id, done.invitation.userId, 'for the new directory user');
  t.equal(grants[0]!.valid_until.getTime() - grants[0]!.valid_from.getTime(), 86_400_000, "for the request's duration, from the first login");
  const state = await eventually(async () => {
    const s = await stack.temporal.client.workflow.getHandle(accessRequestWorkflowId(request.id)).query(accessRequestStateQuery);
    return s.status === 'fulfilled' ? s : undefined;
  }, 30_000, 'the workflow to hear of the redemption');
  t.equal(state.status, 'fulfilled');
  await eventually(async () => notices.notices.some((n) => (n as unknown as Json).type === 'request.fulfilled' && (n as unknown as Json).requestId === request.id), 30_000, 'the sponsor to be told it is fulfilled');

  const { rows: audit } = await db.query<{ action: string; n: number }>(
    `SELECT action, count(*)::int AS n FROM audit_events WHERE (resource_type = 'AccessRequest' AND resource_id = $1) OR (resource_type = 'Invitation' AND resource_id = $2) GROUP BY action ORDER BY action`,
    [request.id, inv.id],
  );
  t.match(Object.fromEntries(audit.map((r) => [r.action, r.n])), {
    'access-request.created': 1,
    'access-request.approved': 1,
    'access-request.invited': 1,
    'access-request.fulfilled': 1,
    'invitation.created': 1,
    'invitation.redeemed': 1,
  }, 'every step is in the audit log, once');
});

t.test('a rejected invitation request invites nobody', async (t) => {
  const linksBefore = links.notices.length;
  const made = await as('maria', 'POST', '/api/requests', { policy: 'contractor-editor', invitee: { email: 'not.wanted@example.com' } });
  t.equal(made.status, 201);
  const id = made.body.id as string;
  await eventually(async () => (await as('mark', 'GET', '/api/approvals')).body.some((r: Json) => r.id === id), 60_000, "the request in the manager's inbox");
  t.equal((await as('mark', 'POST', `/api/requests/${id}/decisions`, { decision: 'reject', comment: 'no budget' })).status, 200);
  const done = await eventually(async () => {
    const r = await as('maria', 'GET', `/api/requests/${id}`);
    return r.body.status === 'pending' ? undefined : r.body;
  }, 30_000, 'the request to be decided');
  t.equal(done.status, 'rejected');
  t.equal(done.invitation, null);
  await stack.temporal.client.workflow.getHandle(accessRequestWorkflowId(id)).result();
  t.equal((await db.query(`SELECT count(*)::int AS n FROM invitations WHERE email = 'not.wanted@example.com'`)).rows[0].n, 0, 'no invitation');
  t.notOk([...fake.users.values()].some((u) => u.email === 'not.wanted@example.com'), 'no Auth0 user');
  t.equal(links.notices.length, linksBefore, 'no link sent');
});

t.test('requests for an email that the policy does not allow are refused with clear API errors', async (t) => {
  const notSponsor = await as('oscar', 'POST', '/api/requests', { policy: 'contractor-editor', invitee: { email: 'friend@example.com' } });
  t.equal(notSponsor.status, 403, 'someone who is not a sponsor');
  t.match(notSponsor.body, { statusCode: 403, error: 'Forbidden', message: /may not sponsor invitations under "contractor-editor"/ });
  const actingAs = await gw.scim({ method: 'POST', url: '/api/requests', token: tokens.oscar!, headers: { 'content-type': 'application/json', 'x-act-as': 'maria@example.com' }, payload: { policy: 'contractor-editor', invitee: { email: 'friend@example.com' } } });
  t.equal(actingAs.statusCode, 403, "a personal token cannot sponsor as someone else");
  const noInvitations = await as('maria', 'POST', '/api/requests', { policy: 'plain-editor', invitee: { email: 'friend@example.com' } });
  t.equal(noInvitations.status, 400, 'a policy without invitation settings');
  t.match(noInvitations.body.message, /does not invite/);
  const known = await as('maria', 'POST', '/api/requests', { policy: 'contractor-editor', invitee: { email: 'OSCAR@example.com' } });
  t.equal(known.status, 409, 'someone in the directory already');
  t.match(known.body.message, /in the directory already/);
  const badEmail = await as('maria', 'POST', '/api/requests', { policy: 'contractor-editor', invitee: { email: 'not an email' } });
  t.equal(badEmail.status, 400);
  const extension = await as('maria', 'POST', '/api/requests', { policy: 'contractor-editor', invitee: { email: 'friend@example.com' }, extends: maria });
  t.equal(extension.status, 400);
  const first = await as('maria', 'POST', '/api/requests', { policy: 'contractor-editor', invitee: { email: 'twice@example.com' } });
  t.equal(first.status, 201);
  const second = await as('maria', 'POST', '/api/requests', { policy: 'contractor-editor', invitee: { email: 'Twice@example.com' } });
  t.equal(second.status, 409, 'a second open request for the same email');
  t.match(second.body.message, /is open already/);
  const other = await as('maria', 'POST', '/api/requests', { policy: 'contractor-editor', invitee: { email: 'someone.else@example.com' } });
  t.equal(other.status, 201, 'a sponsor may ask for several people at once');
  for (const id of [first.body.id, other.body.id]) {
    await eventually(async () => (await as('mark', 'GET', '/api/approvals')).body.some((r: Json) => r.id === id), 60_000, 'the stage to open');
    const cancelled = await as('maria', 'POST', `/api/requests/${id}/cancel`);
    t.equal(cancelled.status, 200, 'the sponsor cancels');
  }
  const { rows } = await db.query(`SELECT count(*)::int AS n FROM access_requests WHERE invitee_email = 'friend@example.com'`);
  t.equal(rows[0].n, 0, 'nothing recorded for refused requests');
});

t.test('the invitation revoked: the request says so, the link is refused, and nothing is granted', async (t) => {
  const request = await invitedRequest(t, 'short.lived@example.com');
  t.equal(request.status, 'invited', request.reason);
  const notice = links.notices.find((n) => n.id === request.invitation.id) as unknown as Json;
  const revoked = await api('DELETE', `/api/invitations/${request.invitation.id}`);
  t.match(revoked, { status: 'revoked', requestId: request.id });
  const now = await as('maria', 'GET', `/api/requests/${request.id}`);
  t.equal(now.body.status, 'revoked');
  t.match(now.body.reason, /invitation was revoked/);
  t.equal(now.body.invitation.status, 'revoked');
  const state = await stack.temporal.client.workflow.getHandle(accessRequestWorkflowId(request.id)).result();
  t.equal(state.status, 'revoked', 'the workflow ends, revoked');
  const auth0User = [...fake.users.values()].find((u) => u.email === 'short.lived@example.com')!;
  t.match((await login(auth0User.user_id, new URL(notice.url as string).searchParams.get('scim_invitation')!)).denied, /withdrawn/);
  t.equal((await db.query(`SELECT count(*)::int AS n FROM grants WHERE reason = $1`, [`invitation:${request.invitation.id}`])).rows[0].n, 0, 'no grant');
  const { rows } = await db.query(`SELECT actor FROM audit_events WHERE action = 'access-request.revoked' AND resource_id = $1`, [request.id]);
  t.equal(rows.length, 1, 'audited');

  // Through the request: an administrator revokes an invited request, and its invitation with it.
  const second = await invitedRequest(t, 'second.try@example.com');
  const out = await api('POST', `/api/requests/${second.id}/revoke`, { reason: 'project cancelled' });
  t.equal(out.status, 'revoked');
  t.match(out.reason, /invitation was revoked by .*: project cancelled/, "the request says why");
  t.equal((await api('GET', `/api/invitations?email=second.try@example.com`))[0].status, 'revoked', 'its invitation is revoked');
  t.equal((await stack.temporal.client.workflow.getHandle(accessRequestWorkflowId(second.id)).result()).status, 'revoked');
});

t.test('the invitation expires unredeemed: the request says so, the link is refused, and nothing is granted', async (t) => {
  const request = await invitedRequest(t, 'too.late@example.com');
  t.equal(request.status, 'invited', request.reason);
  const notice = links.notices.find((n) => n.id === request.invitation.id) as unknown as Json;
  // The link's time runs out (moved into the past rather than waited for: the shortest a policy allows is an hour).
  await db.query(`UPDATE invitations SET expires_at = now() - interval '1 second' WHERE id = $1`, [request.invitation.id]);
  // The workflow wakes at the expiry it was told; here, told to look now.
  await stack.temporal.client.workflow.getHandle(accessRequestWorkflowId(request.id)).signal(invitationSettledSignal);
  const state = await stack.temporal.client.workflow.getHandle(accessRequestWorkflowId(request.id)).result();
  t.equal(state.status, 'expired', 'the workflow ends, expired');
  const now = await as('maria', 'GET', `/api/requests/${request.id}`);
  t.equal(now.body.status, 'expired');
  t.match(now.body.reason, /invitation to too\.late@example\.com expired before it was redeemed/);
  const auth0User = [...fake.users.values()].find((u) => u.email === 'too.late@example.com')!;
  t.match((await login(auth0User.user_id, new URL(notice.url as string).searchParams.get('scim_invitation')!)).denied, /expired/);
  t.equal((await db.query(`SELECT count(*)::int AS n FROM grants WHERE reason = $1`, [`invitation:${request.invitation.id}`])).rows[0].n, 0, 'no grant');
});
