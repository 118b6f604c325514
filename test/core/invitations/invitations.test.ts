/**
 * Invitations end to end: the admin API invites into the HTTPS fake Auth0 tenant, the link reaches
 * the signed delivery webhook, and the shipped post-login Action (connectors/auth0/actions/
 * redeem-invitation.js), run with constructed event and api objects, redeems it with the gateway
 * over HTTP: once; concurrently exactly once; and refused when expired, reused, for another
 * email, or revoked.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { underTestCa } from '../../connectors/auth0/test-ca.js';

const tls = await underTestCa(import.meta.url);
const { default: t } = await import('tap');
const { createServer } = await import('node:http');
const { startFakeAuth0, ALL_SCOPES } = await import('../../connectors/auth0/fake-auth0.js');
const { createTestDatabase } = await import('../../helpers/db.js');
const { startTestGateway } = await import('../../helpers/gateway.js');
const { verifySignature } = await import('@scim-gateway/connector-sdk/signature');

type PostLogin = (event: unknown, api: unknown) => Promise<void>;
const action = createRequire(import.meta.url)('../../../connectors/auth0/actions/redeem-invitation.js') as { onExecutePostLogin: PostLogin };
const PLUGIN = fileURLToPath(new URL('../../fixtures/memory-connector.ts', import.meta.url));

const SECRET = 'invite-client-secret-0123456789abcdef';
const ACTION_SECRET = 'action-secret-0123456789abcdef0123456789';
const WEBHOOK_SECRET = 'webhook-secret-0123456789abcdef012345';
const CONNECTION = 'Username-Password-Authentication';
process.env.AUTH0_INVITE_TEST_SECRET = SECRET;
process.env.AUTH0_INVITE_TEST_ACTION_SECRET = ACTION_SECRET;

const fake = await startFakeAuth0({ cert: tls.cert, key: tls.key });
t.teardown(() => fake.close());
fake.connections.add(CONNECTION);
fake.clients.set('source-app', { secret: SECRET, scopes: ALL_SCOPES });

// The delivery channel: a receiver that checks each notice's signature and keeps it.
type Json = Record<string, unknown> & { [key: string]: any }; // eslint-disable-line @typescript-eslint/no-explicit-any -- notices and answers are inspected freely
const notices: Json[] = [];
const receiver = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8');
    const { ok } = verifySignature(WEBHOOK_SECRET, body, String(req.headers['x-scim-gateway-timestamp']), String(req.headers['x-scim-gateway-signature']));
    if (ok) notices.push(JSON.parse(body));
    res.writeHead(ok ? 204 : 401).end();
  });
});
await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
t.teardown(() => new Promise<void>((r) => receiver.close(() => r())));
const receiverUrl = `http://127.0.0.1:${(receiver.address() as { port: number }).port}/notices`;

const database = await createTestDatabase(t);
const gw = await startTestGateway(t, {
  database,
  temporalAddress: '127.0.0.1:1',
  taskQueue: 'unused',
  scopes: ['scim:read', 'scim:write', 'admin'],
  dispatchOutbox: false,
  env: { DELIVERY_WEBHOOK_URL: receiverUrl, DELIVERY_WEBHOOK_SECRET: WEBHOOK_SECRET, PUBLIC_URL: 'http://gateway.test' },
});
await gw.app.listen({ port: 0, host: '127.0.0.1' });
const gatewayUrl = `http://127.0.0.1:${(gw.app.server.address() as { port: number }).port}`;
const db = database.db;
const api = gw.call;

await db.query(`INSERT INTO sources (id, type, config) VALUES ('auth0-main', 'auth0', $1)`, [
  {
    domain: fake.domain,
    clientId: 'source-app',
    clientSecret: 'env:AUTH0_INVITE_TEST_SECRET',
    connection: CONNECTION,
    actionSecret: 'env:AUTH0_INVITE_TEST_ACTION_SECRET',
    invitationUrl: 'https://app.example.com/login',
  },
]);
await api('PUT', '/api/connectors/app', { id: 'app', type: PLUGIN, config: { namespace: 'invitations' } });
await api('POST', '/api/entitlements', { connectorId: 'app', name: 'editor', target: { group: 'editor' } }, 201);
await api('POST', '/api/entitlements', { connectorId: 'app', name: 'viewer', target: { group: 'viewer' } }, 201);

const secrets = { GATEWAY_URL: gatewayUrl, GATEWAY_SOURCE: 'auth0-main', GATEWAY_ACTION_SECRET: ACTION_SECRET };

/** Runs the Action as Auth0 would for this user, answering what it did. */
async function login(userId: string, token: string | undefined, opts: { secrets?: Record<string, string> } = {}): Promise<{ denied?: string; metadata: Record<string, unknown> }> {
  const user = fake.users.get(userId)!;
  const out: { denied?: string; metadata: Record<string, unknown> } = { metadata: {} };
  const apiObject = {
    access: { deny: (reason: string) => ((out.denied = reason), apiObject) },
    user: { setAppMetadata: (key: string, value: unknown) => ((out.metadata[key] = value), apiObject) },
  };
  await action.onExecutePostLogin(
    { user: { user_id: user.user_id, email: user.email, name: user.name, app_metadata: structuredClone(user.app_metadata) }, request: { query: token ? { scim_invitation: token } : {} }, secrets: opts.secrets ?? secrets },
    apiObject,
  );
  return out;
}

async function invite(email: string, entitlements = ['app/editor'], expect = 201): Promise<{ invitation: Json; token: string; notice: Json }> {
  const before = notices.length;
  const invitation = await api('POST', '/api/invitations', { source: 'auth0-main', email, entitlements }, expect);
  const notice = notices.slice(before).find((n) => n.id === invitation.id)!;
  const token = notice ? new URL(notice.url).searchParams.get('scim_invitation')! : '';
  return { invitation, token, notice };
}

const grantsOf = async (invitationId: string) =>
  (await db.query(`SELECT e.name FROM grants g JOIN entitlements e ON e.id = g.entitlement_id WHERE g.reason = $1 AND g.status = 'active' ORDER BY 1`, [`invitation:${invitationId}`])).rows.map((r) => r.name);

t.test('inviting a new email creates the Auth0 user, marks it invited, and sends the link with a password ticket', async (t) => {
  const { invitation, token, notice } = await invite('New.Person@Example.com', ['app/editor', 'app/viewer']);
  t.match(invitation, { email: 'new.person@example.com', status: 'pending', newUser: true, entitlements: ['app/editor', 'app/viewer'] });
  t.notOk('token' in invitation, 'the token is in no answer');
  t.ok(notice, 'the link went to the delivery channel, signed');
  t.match(notice, { type: 'invitation.created', email: 'new.person@example.com', source: 'auth0-main' });
  t.match(notice.url, /^https:\/\/app\.example\.com\/login\?scim_invitation=inv_/);
  const ticket = fake.tickets.find((x) => x.user_id === invitation.auth0UserId);
  t.equal(notice.passwordUrl, ticket?.url, 'a new user gets a password-change ticket');
  t.same(fake.users.get(invitation.auth0UserId)!.app_metadata.scimGatewayInvitation, { pending: true, invitationId: invitation.id });
  const { rows } = await db.query('SELECT to_jsonb(i)::text AS row, token_hash FROM invitations i WHERE id = $1', [invitation.id]);
  t.notOk(rows[0].row.includes(token.slice(4)), 'only the hash of the token is stored');

  // Logging in without the link is refused with a hint.
  t.match((await login(invitation.auth0UserId, undefined)).denied, /invitation link/);
  // With it: granted, active, and the mark removed.
  const first = await login(invitation.auth0UserId, token);
  t.equal(first.denied, undefined, 'the first login with the link goes through');
  t.same(first.metadata, { scimGatewayInvitation: null });
  t.same(await grantsOf(invitation.id), ['editor', 'viewer'], 'entitlements granted with the reason invitation:<id>');
  const user = await db.query(`SELECT id, active, source_id FROM users WHERE external_id = $1 AND deleted_at IS NULL`, [invitation.auth0UserId]);
  t.match(user.rows[0], { active: true, source_id: 'auth0-main' });
  const outbox = await db.query(`SELECT count(*)::int AS n FROM outbox WHERE topic = 'user.changed' AND aggregate_id = $1`, [user.rows[0].id]);
  t.ok(outbox.rows[0].n >= 1, 'provisioning hears of it');
  const listed = await api('GET', '/api/invitations?source=auth0-main');
  t.match(listed.find((i: Json) => i.id === invitation.id), { status: 'redeemed', userId: user.rows[0].id });

  // Reused: refused.
  t.match((await login(invitation.auth0UserId, token)).denied, /already been used/);
});

t.test('two concurrent redemptions: exactly one succeeds', async (t) => {
  const { invitation, token } = await invite('racer@example.com');
  const results = await Promise.all([login(invitation.auth0UserId, token), login(invitation.auth0UserId, token), login(invitation.auth0UserId, token)]);
  t.equal(results.filter((r) => r.denied === undefined).length, 1, 'one login goes through');
  t.equal(results.filter((r) => /already been used/.test(r.denied ?? '')).length, 2, 'the others find it used');
  const { rows } = await db.query(`SELECT count(*)::int AS n FROM audit_events WHERE action = 'invitation.redeemed' AND resource_id = $1`, [invitation.id]);
  t.equal(rows[0].n, 1);
  t.same(await grantsOf(invitation.id), ['editor']);
});

t.test('expired, wrong email, revoked and forged invitations deny the login', async (t) => {
  const expired = await invite('late@example.com');
  await db.query(`UPDATE invitations SET expires_at = now() - interval '1 second' WHERE id = $1`, [expired.invitation.id]);
  t.match((await login(expired.invitation.auth0UserId, expired.token)).denied, /expired/);
  t.same(await grantsOf(expired.invitation.id), []);
  t.equal((await api('GET', '/api/invitations?email=late@example.com'))[0].status, 'expired');

  const someoneElse = fake.addUser({ email: 'someone.else@example.com', connection: CONNECTION });
  const meant = await invite('meant@example.com');
  t.match((await login(someoneElse.user_id, meant.token)).denied, /different email/);
  t.equal((await login(meant.invitation.auth0UserId, meant.token)).denied, undefined, 'a wrong email does not use the invitation up');

  const revoked = await invite('withdrawn@example.com');
  t.match(await api('DELETE', `/api/invitations/${revoked.invitation.id}`), { status: 'revoked' });
  await api('DELETE', `/api/invitations/${revoked.invitation.id}`, undefined, 409);
  await api('DELETE', '/api/invitations/not-an-id', undefined, 404);
  t.match((await login(revoked.invitation.auth0UserId, revoked.token)).denied, /withdrawn/);
  t.same(await grantsOf(revoked.invitation.id), []);

  t.match((await login(someoneElse.user_id, 'inv_forged')).denied, /not valid/);
  t.match((await login(meant.invitation.auth0UserId, meant.token, { secrets: { ...secrets, GATEWAY_ACTION_SECRET: 'wrong' } })).denied, /could not be checked/, "a wrong Action secret is refused by the gateway");
  const direct = await gw.app.inject({ method: 'POST', url: '/auth0/auth0-main/invitations/redeem', payload: { token: meant.token, email: 'meant@example.com', userId: 'x' } });
  t.equal(direct.statusCode, 401, 'the redeem endpoint needs the Action secret');
});

t.test('inviting an existing Auth0 user marks it without a ticket; bad input is refused clearly', async (t) => {
  const existing = fake.addUser({ email: 'known@example.com', connection: CONNECTION });
  const tickets = fake.tickets.length;
  const { invitation, notice } = await invite('known@example.com');
  t.match(invitation, { newUser: false, auth0UserId: existing.user_id });
  t.equal(fake.tickets.length, tickets, 'no password ticket for a user who has a password');
  t.notOk('passwordUrl' in notice);
  t.equal((existing.app_metadata.scimGatewayInvitation as { pending: boolean }).pending, true);
  await api('POST', '/api/invitations', { source: 'auth0-main', email: 'x@example.com', entitlements: ['app/nope'] }, 400);
  await api('POST', '/api/invitations', { source: 'nope', email: 'x@example.com', entitlements: ['app/editor'] }, 400);
  await api('POST', '/api/invitations', { source: 'auth0-main', email: 'not-an-email', entitlements: ['app/editor'] }, 400);
  await api('POST', '/api/invitations', { source: 'auth0-main', email: 'x@example.com', entitlements: ['app/editor'], expiresAt: '2020-01-01T00:00:00Z' }, 400);
});
