/**
 * The google-groups connector in the whole engine (real Temporal dev server, PostgreSQL, the
 * gateway's SCIM and admin API) against the fake Google: rules put SCIM users into a Google group,
 * Google's rate limits are waited out and retried, a refusal stops cleanly with its reason on the
 * account, a move between SCIM groups changes the role without dropping the membership,
 * deactivation suspends the Workspace user and reactivation restores everything, and reconciliation
 * finds drift made directly in Google and fixes it in enforce mode.
 */
import t from 'tap';
import { userBody } from '../../helpers/gateway.js';
import { eventually } from '../../helpers/temporal.js';
import { startTestStack } from '../../helpers/stack.js';
import { startFakeGoogle } from './fake-google.js';

const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';

const fake = await startFakeGoogle();
t.teardown(() => fake.close());
// The in-process worker resolves env: references from its own environment.
process.env.GG_ENGINE_TEST_KEY = fake.serviceAccount.keyJson();

const { gw, database } = await startTestStack(t, { idleMs: 500 });
const api = gw.call;
const ENG = 'eng@example.com';
const ids: Record<string, string> = {};
const email = (name: string) => `${name}@${fake.domain}`;

async function scimUser(name: string): Promise<string> {
  const body = userBody(email(name), { emails: [{ value: email(name), primary: true }], name: { givenName: name, familyName: 'Tester' } });
  ids[name] = (await api('POST', '/scim/v2/Users', body, 201)).id as string;
  return ids[name];
}

async function lastError(userId: string): Promise<string | undefined> {
  const accounts: Array<{ connectorId: string; lastError: string | null }> = await api('GET', `/api/users/${userId}/provisioning`);
  return accounts.find((a) => a.connectorId === 'google')?.lastError ?? undefined;
}

t.test('setup: the connector validates, entitlements for two roles of one group, a rule', async (t) => {
  fake.addGroup(ENG, 'Engineering');
  await api('PUT', '/api/connectors/google', {
    id: 'google',
    type: 'google-groups',
    config: { serviceAccountKey: 'env:GG_ENGINE_TEST_KEY', subject: `admin@${fake.domain}`, suspendOnDeprovision: true, pageSize: 2, rootUrl: fake.url, oauthEndpoint: fake.tokenUrl },
  });
  t.same(await api('POST', '/api/connectors/google/test'), { ok: true }, 'validate() passes in a worker');
  await api('POST', '/api/entitlements', { connectorId: 'google', name: 'eng-members', target: { group: ENG, role: 'MEMBER' }, membership: 'authoritative' }, 201);
  await api('POST', '/api/entitlements', { connectorId: 'google', name: 'eng-managers', target: { group: ENG, role: 'MANAGER' }, membership: 'authoritative' }, 201);
  const bad = await gw.scim({ method: 'POST', url: '/api/entitlements', headers: { 'content-type': 'application/json' }, payload: { connectorId: 'google', name: 'x', target: { group: ENG, role: 'ADMIN' } } });
  t.equal(bad.statusCode, 400, 'an unknown role is refused by the entitlement schema');
  await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Engineering' }, 201);
  await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Eng Leads' }, 201);
  await api('POST', '/api/rules', { name: 'engineering', group: 'Engineering', entitlements: ['google/eng-members'] }, 201);
  await api('POST', '/api/rules', { name: 'eng-leads', group: 'Eng Leads', entitlements: ['google/eng-managers'] }, 201);
});

async function groupId(displayName: string): Promise<string> {
  const list = await api('GET', `/scim/v2/Groups?filter=${encodeURIComponent(`displayName eq "${displayName}"`)}`);
  return list.Resources[0].id as string;
}
async function members(displayName: string, op: 'add' | 'remove', names: string[]): Promise<void> {
  const gid = await groupId(displayName);
  const Operations =
    op === 'add'
      ? [{ op: 'add', path: 'members', value: names.map((n) => ({ value: ids[n] })) }]
      : names.map((n) => ({ op: 'remove', path: `members[value eq "${ids[n]}"]` }));
  await api('PATCH', `/scim/v2/Groups/${gid}`, { schemas: [PATCH], Operations });
}

t.test("Google's rate limits are waited out and retried until the memberships land", async (t) => {
  for (const n of ['alice', 'bob', 'carol']) fake.addUser(email(n));
  fake.fail('members.insert', { status: 429, reason: 'rateLimitExceeded', message: 'Quota exceeded for quota metric Queries', retryAfter: '1', times: 2 });
  fake.fail('members.insert', { status: 403, reason: 'userRateLimitExceeded', message: 'User Rate Limit Exceeded' });
  for (const n of ['alice', 'bob', 'carol']) await scimUser(n);
  await members('Engineering', 'add', ['alice', 'bob', 'carol']);

  await eventually(async () => ['alice', 'bob', 'carol'].every((n) => fake.roleOf(ENG, email(n)) === 'MEMBER'), 60_000, 'all three MEMBERs of eng@');
  const inserts = fake.requests.filter((r) => r.op === 'members.insert').map((r) => r.status);
  t.same(inserts.filter((s) => s !== 200).sort(), [403, 429, 429], 'three throttled attempts');
  t.equal(inserts.filter((s) => s === 200).length, 3, 'then one successful insert per user');
  // Each failed try records its error on the account; the successful one clears it once recorded.
  for (const n of ['alice', 'bob', 'carol']) {
    await eventually(async () => (await lastError(ids[n]!)) === undefined, 30_000, `no error left on ${n}'s account`);
  }
  t.pass('no error left on any account');
});

t.test('a permission error or a missing Workspace user stops cleanly with the reason on the account', async (t) => {
  // No Workspace user for dave: the connector does not create one.
  await scimUser('dave');
  await members('Engineering', 'add', ['dave']);
  const daveError = await eventually(() => lastError(ids.dave!), 60_000, "dave's error to be recorded");
  t.match(daveError, 'dave@example.com is not a user of the Google Workspace domain');

  fake.addUser(email('erin'));
  fake.fail('members.insert', { status: 403, reason: 'forbidden', message: 'Not Authorized to access this resource/api' });
  await scimUser('erin');
  // The round for erin's creation ends first, so exactly one round (the membership's) meets the 403.
  await eventually(async () => (await database.db.query('SELECT 1 FROM user_sync_state WHERE user_id = $1', [ids.erin])).rowCount === 1, 30_000, "erin's first sync round");
  await members('Engineering', 'add', ['erin']);
  const erinError = await eventually(() => lastError(ids.erin!), 60_000, "erin's error to be recorded");
  t.match(erinError, 'HTTP 403 (forbidden): Not Authorized to access this resource/api');
  t.match(erinError, 'lacks an admin privilege');
  t.equal(fake.roleOf(ENG, email('erin')), undefined, 'not a member');
  const attempts = fake.requests.filter((r) => r.op === 'members.insert').length;
  await new Promise((r) => setTimeout(r, 1500));
  t.equal(fake.requests.filter((r) => r.op === 'members.insert').length, attempts, 'a permanent failure is not retried');
});

t.test('moving to Eng Leads changes the role to MANAGER without dropping the membership', async (t) => {
  const mark = fake.requests.length;
  await members('Eng Leads', 'add', ['alice']);
  await eventually(async () => fake.roleOf(ENG, email('alice')) === 'MANAGER', 60_000, 'alice to be a MANAGER');
  await members('Engineering', 'remove', ['alice']);
  await eventually(async () => {
    const { rows } = await database.db.query(
      `SELECT e.name FROM account_grants ag JOIN entitlements e ON e.id = ag.entitlement_id WHERE ag.user_id = $1`,
      [ids.alice],
    );
    return rows.length === 1 && rows[0].name === 'eng-managers';
  }, 60_000, 'the MEMBER entitlement to be revoked');
  t.equal(fake.roleOf(ENG, email('alice')), 'MANAGER', 'still a MANAGER after the MEMBER entitlement went');
  const ops = fake.requests.slice(mark).map((r) => `${r.op} ${r.status}`);
  t.ok(ops.includes('members.patch 200'), 'the role was patched');
  t.notOk(ops.some((o) => o.startsWith('members.delete')), 'the membership was never deleted');
});

t.test('deactivation removes the membership and suspends the Workspace user; reactivation restores both', async (t) => {
  await api('PATCH', `/scim/v2/Users/${ids.carol}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { active: false } }] });
  await eventually(async () => fake.user(email('carol'))?.suspended === true, 60_000, 'carol to be suspended');
  t.equal(fake.roleOf(ENG, email('carol')), undefined, 'removed from eng@');

  await api('PATCH', `/scim/v2/Users/${ids.carol}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { active: true } }] });
  await eventually(async () => fake.user(email('carol'))?.suspended === false && fake.roleOf(ENG, email('carol')) === 'MEMBER', 60_000, 'carol back and a MEMBER again');
  t.pass('reactivation lifted the suspension and granted the membership again');
});

type Summary = { drift: Array<{ kind: string; action: string; count: number }> };
const count = (s: Summary, kind: string, action: string) => s.drift.find((d) => d.kind === kind && d.action === action)?.count ?? 0;

t.test('reconcile finds drift made directly in Google and fixes it in enforce mode', async (t) => {
  fake.removeMember(ENG, email('bob')); // missing membership
  fake.addUser(email('mallory'));
  fake.addMember(ENG, email('mallory'), 'MEMBER'); // unexpected, not a user of ours
  fake.addMember(ENG, 'nested-team@example.com', 'MEMBER', 'GROUP'); // a nested group: never an account

  const dry: Summary = await api('POST', '/api/connectors/google/reconcile', { dryRun: true });
  t.equal(count(dry, 'missingMembership', 'reported'), 1, "bob's membership is missing");
  t.equal(count(dry, 'unexpectedMembership', 'reported'), 1, 'mallory should not be in eng@');
  t.ok(count(dry, 'orphanAccount', 'reported') >= 2, 'Workspace users without a directory user are reported (admin, mallory, ...)');
  t.equal(fake.roleOf(ENG, email('mallory')), 'MEMBER', 'a dry run changes nothing');

  const run: Summary = await api('POST', '/api/connectors/google/reconcile', { wait: true });
  t.equal(count(run, 'missingMembership', 'fixed'), 1);
  t.equal(count(run, 'unexpectedMembership', 'fixed'), 1);
  await eventually(async () => fake.roleOf(ENG, email('bob')) === 'MEMBER' && fake.roleOf(ENG, email('mallory')) === undefined, 60_000, 'eng@ to converge');
  t.equal(fake.roleOf(ENG, 'nested-team@example.com'), 'MEMBER', 'the nested group is untouched');
  t.equal(fake.roleOf(ENG, email('alice')), 'MANAGER', 'the manager is untouched');

  const again: Summary = await eventually(async () => {
    const s: Summary = await api('POST', '/api/connectors/google/reconcile', { wait: true });
    return s.drift.every((d) => d.action !== 'fixed') ? s : undefined;
  }, 60_000, 'a clean reconcile');
  t.same(
    again.drift.filter((d) => d.kind !== 'orphanAccount'),
    [],
    'nothing left but Workspace users the directory does not know',
  );
});
