/**
 * Okta → gateway → Auth0, end to end on the real Temporal dev server and PostgreSQL: an Okta-like
 * SCIM client creates a user and puts them in the "Customers-Portal" group; a rule gives that group
 * an Auth0 role; the auth0 connector (through the real `auth0` package, over HTTPS to the fake
 * tenant) creates the user in the database connection, issues the invitation ticket and assigns the
 * role. Okta's deactivation PATCH blocks and flags the user (keeping their other app_metadata), and
 * the shipped post-login Action, run on the tenant's record of the user, denies the login;
 * reactivation unblocks the user and the Action lets them in.
 */
import { createRequire } from 'node:module';
import { underTestCa } from './test-ca.js';

const tls = await underTestCa(import.meta.url);
const { default: t } = await import('tap');
const { startFakeAuth0, ALL_SCOPES } = await import('./fake-auth0.js');
const { startTestStack } = await import('../../helpers/stack.js');
const { eventually } = await import('../../helpers/temporal.js');
const { FLAG_KEY } = await import('../../../connectors/auth0/user.js');

type PostLogin = (event: unknown, api: unknown) => Promise<void>;
const action = createRequire(import.meta.url)('../../../connectors/auth0/actions/deny-deprovisioned.js') as { onExecutePostLogin: PostLogin };

const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
const CONNECTION = 'Customers';
const SECRET = 'e2e-client-secret-0123456789abcdef';

const fake = await startFakeAuth0({ cert: tls.cert, key: tls.key });
t.teardown(() => fake.close());
fake.connections.add(CONNECTION);
fake.clients.set('scim-gateway', { secret: SECRET, scopes: ALL_SCOPES });
const portal = fake.addRole('Customers-Portal');
// The worker in this process resolves the connector's env: reference from here.
process.env.AUTH0_E2E_CLIENT_SECRET = SECRET;

const { gw } = await startTestStack(t, { idleMs: 1000 });
const api = gw.call;

/** Runs the shipped Action the way Auth0 would for this user's login; answers the deny reasons. */
async function login(userId: string): Promise<string[]> {
  const record = fake.users.get(userId)!;
  const denied: string[] = [];
  const actionApi = {
    access: {
      deny(reason: string) {
        denied.push(reason);
        return actionApi;
      },
    },
  };
  await action.onExecutePostLogin({ user: structuredClone({ user_id: record.user_id, email: record.email, app_metadata: record.app_metadata }) }, actionApi);
  return denied;
}

const findByEmail = (email: string) => [...fake.users.values()].find((u) => u.email === email);

t.test('Okta provisions a portal customer: created in the connection, invited, given the role', async (t) => {
  await api('PUT', '/api/connectors/auth0', {
    id: 'auth0',
    type: 'auth0',
    config: { domain: fake.domain, clientId: 'scim-gateway', clientSecret: 'env:AUTH0_E2E_CLIENT_SECRET', connection: CONNECTION },
    deprovision: 'disable',
  });
  t.same(await api('POST', '/api/connectors/auth0/test'), { ok: true }, 'the connection test passes in the worker');
  await api('POST', '/api/entitlements', { connectorId: 'auth0', name: 'portal', target: { role: 'Customers-Portal' } }, 201);
  const group = await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Customers-Portal' }, 201);
  await api('POST', '/api/rules', { name: 'portal-customers', group: 'Customers-Portal', entitlements: ['auth0/portal'] }, 201);

  // What Okta sends: the user, then a group push adding them.
  const jane = await api(
    'POST',
    '/scim/v2/Users',
    {
      schemas: [USER],
      userName: 'jane.doe@example.com',
      name: { givenName: 'Jane', familyName: 'Doe' },
      displayName: 'Jane Doe',
      emails: [{ primary: true, value: 'jane.doe@example.com', type: 'work' }],
      externalId: '00u1abcdEFGH',
      active: true,
    },
    201,
  );
  await api('PATCH', `/scim/v2/Groups/${group.id}`, { schemas: [PATCH], Operations: [{ op: 'add', path: 'members', value: [{ value: jane.id, display: 'jane.doe@example.com' }] }] });

  const created = await eventually(async () => {
    const u = findByEmail('jane.doe@example.com');
    return u && portal.users.has(u.user_id) ? u : undefined;
  }, 60_000, 'jane in Auth0 with the Customers-Portal role');
  t.same(created.identities.map((i) => i.connection), [CONNECTION], 'created in the configured database connection');
  t.equal(created.name, 'Jane Doe');
  t.equal(created.given_name, 'Jane');
  t.equal(created.family_name, 'Doe');
  t.equal(fake.tickets.filter((tk) => tk.user_id === created.user_id).length, 1, 'one invitation ticket issued');
  t.notOk(created.blocked, 'not blocked');
  t.same(await login(created.user_id), [], 'the Action lets her in');

  const provisioning = await api('GET', `/api/users/${jane.id}/provisioning`);
  t.match(provisioning.find((a: { connectorId: string }) => a.connectorId === 'auth0'), { state: 'active', lastError: null, remoteId: created.user_id });
});

t.test('Okta deactivates: blocked and flagged, other app_metadata kept, the Action denies; reactivation lets her back', async (t) => {
  const [jane] = (await api('GET', `/scim/v2/Users?filter=${encodeURIComponent('userName eq "jane.doe@example.com"')}`)).Resources;
  const record = findByEmail('jane.doe@example.com')!;
  // Something else in the tenant keeps its own data in app_metadata.
  record.app_metadata = { ...record.app_metadata, crmId: 'C-4711', tier: { level: 'gold' } };

  await api('PATCH', `/scim/v2/Users/${jane.id}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { active: false } }] });
  await eventually(async () => record.blocked === true && !portal.users.has(record.user_id), 60_000, 'jane blocked and out of the role');
  t.match(record.app_metadata[FLAG_KEY], { deprovisioned: true, source: 'scim-gateway', connection: CONNECTION }, 'flagged by the gateway');
  t.equal(record.app_metadata.crmId, 'C-4711', 'pre-existing app_metadata keys are kept');
  t.same(record.app_metadata.tier, { level: 'gold' }, 'including nested ones');
  t.ok(fake.users.has(record.user_id), 'the user is kept (deprovision: disable)');
  const denied = await login(record.user_id);
  t.equal(denied.length, 1, 'the Action denies the login');
  t.match(denied[0], /access has been removed/);

  await api('PATCH', `/scim/v2/Users/${jane.id}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { active: true } }] });
  await eventually(async () => record.blocked === false && portal.users.has(record.user_id), 60_000, 'jane unblocked and back in the role');
  t.notOk(FLAG_KEY in record.app_metadata, 'the flag is removed');
  t.equal(record.app_metadata.crmId, 'C-4711', 'other keys survive the removal');
  t.same(await login(record.user_id), [], 'the Action lets her in again');
  t.equal(fake.tickets.filter((tk) => tk.user_id === record.user_id).length, 1, 'no second invitation for a returning user');
  t.equal([...fake.users.values()].filter((u) => u.email === 'jane.doe@example.com').length, 1, 'still one Auth0 user');
});

t.test('reconcile reads the connection and the role back: clean, then drift made in the tenant is found', async (t) => {
  type Summary = { drift: Array<{ kind: string; action: string; count: number }>; accountsSeen: number };
  const count = (s: Summary, kind: string) => s.drift.filter((d) => d.kind === kind).reduce((n, d) => n + d.count, 0);
  const clean: Summary = await api('POST', '/api/connectors/auth0/reconcile', { dryRun: true });
  t.equal(clean.accountsSeen, 1, 'one account in the connection');
  t.same(clean.drift.filter((d) => d.count > 0), [], 'no drift');

  const stranger = fake.addUser({ email: 'walk-in@example.com', connection: CONNECTION });
  portal.users.add(stranger.user_id);
  const record = findByEmail('jane.doe@example.com')!;
  portal.users.delete(record.user_id);
  const drifted: Summary = await api('POST', '/api/connectors/auth0/reconcile', { dryRun: true });
  t.equal(count(drifted, 'orphanAccount'), 1, 'a user created in Auth0 by hand is an orphan');
  t.equal(count(drifted, 'missingMembership'), 1, 'the role taken from jane in Auth0 is missing');
  t.equal(count(drifted, 'unexpectedMembership'), 1, 'the stranger holding the role is unexpected');
});
