/**
 * The github connector in the whole engine (real Temporal dev server, PostgreSQL, the gateway's
 * SCIM and admin API) against the fake GitHub behind Prism: a rule puts SCIM users into a team,
 * GitHub's primary and secondary rate limits are waited out and retried until they pass, a 403
 * stops cleanly with its reason on the account, deactivation removes the person from the
 * organization, reconciliation finds drift made directly in GitHub and fixes it in enforce mode, and
 * a user invited by email moves to their username when the directory sends it later.
 */
import t from 'tap';
import { userBody } from '../../helpers/gateway.js';
import { eventually } from '../../helpers/temporal.js';
import { startTestStack } from '../../helpers/stack.js';
import { startFakeGitHub } from './fake-github.js';
import { startPrism } from './prism.js';

const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
const TOKEN = 'ghp_engineTestToken0123456789abcdefgh';

const fake = await startFakeGitHub({ tokens: [TOKEN] });
t.teardown(() => fake.close());
const prism = await startPrism(fake.url);
t.teardown(() => prism.close());
// The in-process worker resolves env: references from its own environment.
process.env.GH_ENGINE_TEST_TOKEN = TOKEN;

const { gw, database } = await startTestStack(t, { idleMs: 500 });
const api = gw.call;
const ids: Record<string, string> = {};
const eng = () => fake.teams.get('eng')!.members;
type Summary = { drift: Array<{ kind: string; action: string; count: number }> };
const count = (s: Summary, kind: string, action: string) => s.drift.find((d) => d.kind === kind && d.action === action)?.count ?? 0;

async function scimUser(login: string): Promise<string> {
  ids[login] = (await api('POST', '/scim/v2/Users', userBody(login, { emails: [{ value: `${login}@example.com`, primary: true }] }), 201)).id as string;
  return ids[login];
}

async function joinEngineering(userId: string): Promise<void> {
  const [group] = (await api('GET', `/scim/v2/Groups?filter=${encodeURIComponent('displayName eq "Engineering"')}`)).Resources;
  await api('PATCH', `/scim/v2/Groups/${group.id}`, { schemas: [PATCH], Operations: [{ op: 'add', path: 'members', value: [{ value: userId }] }] });
}

t.test('setup: the connector validates in a worker; a team entitlement and a rule', async (t) => {
  fake.addTeam('eng');
  for (const login of ['alice', 'bob', 'carol']) fake.addMember(login);
  await api('PUT', '/api/connectors/gh', { id: 'gh', type: 'github', config: { baseUrl: prism.url, org: 'acme', token: 'env:GH_ENGINE_TEST_TOKEN', pageSize: 2 } });
  t.same(await api('POST', '/api/connectors/gh/test'), { ok: true }, 'validate() passes');
  await api('POST', '/api/entitlements', { connectorId: 'gh', name: 'eng', target: { team: 'eng', role: 'member' }, membership: 'authoritative' }, 201);
  const bad = await gw.scim({ method: 'POST', url: '/api/entitlements', headers: { 'content-type': 'application/json' }, payload: { connectorId: 'gh', name: 'x', target: { team: 'eng', role: 'owner' } } });
  t.equal(bad.statusCode, 400, 'an unknown team role is refused by the entitlement schema');
  await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Engineering' }, 201);
  await api('POST', '/api/rules', { name: 'engineering', group: 'Engineering', entitlements: ['gh/eng'] }, 201);
});

t.test('primary and secondary rate limits are waited out and retried until they pass', async (t) => {
  const reset = String(Math.floor(Date.now() / 1000) + 1);
  fake.inject({ match: /^GET \/orgs\/acme\/memberships\/alice$/, status: 403, headers: { 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': reset }, body: { message: 'API rate limit exceeded', documentation_url: 'https://docs.github.com/rest' } });
  fake.inject({ match: /^PUT \/orgs\/acme\/teams\/eng\/memberships\/alice$/, status: 403, headers: { 'retry-after': '1' }, body: { message: 'You have exceeded a secondary rate limit.', documentation_url: 'https://docs.github.com/rest' } });
  await joinEngineering(await scimUser('alice'));
  await eventually(async () => eng().get('alice') === 'member', 60_000, 'alice in team eng');
  const hits = (method: string, path: string) => fake.requests.filter((r) => r.method === method && r.path === path).length;
  t.ok(hits('GET', '/orgs/acme/memberships/alice') >= 2, 'the rate-limited lookup was retried');
  t.ok(hits('PUT', '/orgs/acme/teams/eng/memberships/alice') >= 2, 'the rate-limited team write was retried');
  t.equal(fake.faults.length, 0, 'both limits were hit');
  // The retried write's error is cleared when its activity completes, a moment after the fake saw it.
  const account = async () => (await api('GET', `/api/users/${ids.alice}/provisioning`))[0];
  await eventually(async () => (await account())?.lastError === null, 30_000, 'the retried error is cleared');
  t.match(await account(), { connectorId: 'gh', remoteId: 'alice', state: 'active', lastError: null });
});

t.test('a 403 that is not a rate limit stops with its reason on the account', async (t) => {
  fake.inject({ match: /^PUT \/orgs\/acme\/teams\/eng\/memberships\/carol$/, status: 403, times: 100, body: { message: 'Resource not accessible by integration', documentation_url: 'https://docs.github.com/rest' } });
  await joinEngineering(await scimUser('carol'));
  const error = await eventually(async () => {
    const accounts: Array<{ connectorId: string; lastError: string | null }> = await api('GET', `/api/users/${ids.carol}/provisioning`);
    return accounts.find((a) => a.connectorId === 'gh')?.lastError;
  }, 60_000, "carol's error to be recorded");
  t.match(error, 'HTTP 403: Resource not accessible by integration');
  t.match(error, /organization owner rights/, 'with what to do about it');
  t.notOk(eng().has('carol'), 'nothing was granted');
  // The engine tries again only on the user's next change; an activity retry (the first after 1 s)
  // would show as more tries than sync rounds.
  await new Promise((r) => setTimeout(r, 1500));
  const tries = fake.requests.filter((r) => r.method === 'PUT' && r.path === '/orgs/acme/teams/eng/memberships/carol').length;
  const { rows } = await database.db.query<{ syncs: number }>('SELECT syncs FROM user_sync_state WHERE user_id = $1', [ids.carol]);
  t.ok(tries >= 1 && tries <= rows[0]!.syncs, `a permanent failure is not retried (${tries} tries in ${rows[0]!.syncs} sync rounds)`);
  fake.faults.length = 0;
});

t.test('reconcile finds drift made in GitHub and fixes it in enforce mode', async (t) => {
  await joinEngineering(await scimUser('bob'));
  await eventually(async () => eng().has('bob'), 60_000, 'bob in team eng');

  fake.addMember('mallory', 'member', { eng: 'member' }); // an extra team member, no user of ours
  fake.removeMember('bob'); // someone removed bob from the organization

  const dry: Summary = await api('POST', '/api/connectors/gh/reconcile', { dryRun: true });
  t.equal(count(dry, 'missingAccount', 'reported'), 1, "bob's membership is gone");
  t.equal(count(dry, 'missingMembership', 'reported'), 1, 'and so his team membership');
  t.equal(count(dry, 'unexpectedMembership', 'reported'), 1, 'mallory in eng');
  t.ok(eng().has('mallory') && !fake.members.has('bob'), 'a dry run changes nothing');

  const run: Summary = await api('POST', '/api/connectors/gh/reconcile', { wait: true });
  t.equal(count(run, 'missingAccount', 'fixed'), 1);
  t.equal(count(run, 'unexpectedMembership', 'fixed'), 1);
  await eventually(async () => !eng().has('mallory') && [...fake.invitations.values()].some((i) => i.login === 'bob' && i.teams.get('eng') === 'member'), 60_000, 'mallory out of eng, bob invited back into the org and team');
  fake.accept('bob');
  t.equal(eng().get('bob'), 'member', 'once bob accepts he is back in eng');
  t.ok(fake.members.has('mallory'), 'mallory stays in the organization: only the team is authoritative');
});

t.test('deactivation removes the person from the organization', async (t) => {
  await api('PATCH', `/scim/v2/Users/${ids.alice}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { active: false } }] });
  await eventually(async () => !fake.members.has('alice'), 60_000, 'alice removed from acme');
  t.notOk(eng().has('alice'), 'and from eng');
  const account = await eventually(async () => {
    const [a] = await api('GET', `/api/users/${ids.alice}/provisioning`);
    return a?.state === 'disabled' ? a : undefined;
  }, 30_000, 'the account to be recorded as disabled');
  t.match(account, { connectorId: 'gh', lastError: null });
});

t.test('a user invited by email moves to their username when the directory sends it', async (t) => {
  // A second instance on the same organization reads the username from nickName, which Okta-style
  // directories fill in after the first push.
  await api('PUT', '/api/connectors/gh-late', { id: 'gh-late', type: 'github', config: { baseUrl: prism.url, org: 'acme', token: 'env:GH_ENGINE_TEST_TOKEN', usernameAttribute: 'nickName' } });
  fake.addTeam('platform');
  fake.addUser('Dave-GH');
  await api('POST', '/api/entitlements', { connectorId: 'gh-late', name: 'member', target: { org: 'member' } }, 201);
  await api('POST', '/api/entitlements', { connectorId: 'gh-late', name: 'platform', target: { team: 'platform' } }, 201);
  for (const [group, entitlement] of [['Acme', 'gh-late/member'], ['Platform', 'gh-late/platform']] as const) {
    await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: group }, 201);
    await api('POST', '/api/rules', { name: group.toLowerCase(), group, entitlements: [entitlement] }, 201);
  }
  const join = async (displayName: string, userId: string) => {
    const [group] = (await api('GET', `/scim/v2/Groups?filter=${encodeURIComponent(`displayName eq "${displayName}"`)}`)).Resources;
    await api('PATCH', `/scim/v2/Groups/${group.id}`, { schemas: [PATCH], Operations: [{ op: 'add', path: 'members', value: [{ value: userId }] }] });
  };
  const account = async () => ((await api('GET', `/api/users/${ids.dave}/provisioning`)) as Array<{ connectorId: string; remoteId: string | null; lastError: string | null }>).find((a) => a.connectorId === 'gh-late');
  const emailInvitation = () => [...fake.invitations.values()].find((i) => i.email === 'dave.late@example.com');

  ids.dave = (await api('POST', '/scim/v2/Users', userBody('dave', { emails: [{ value: 'dave.late@example.com', primary: true }] }), 201)).id as string;
  await join('Acme', ids.dave);
  await eventually(async () => {
    const { rows } = await database.db.query('SELECT 1 FROM account_grants WHERE user_id = $1', [ids.dave]);
    return rows.length === 1 && emailInvitation();
  }, 60_000, 'dave invited by email, holding the org entitlement');
  t.match(await account(), { remoteId: 'email:dave.late@example.com', lastError: null });

  await join('Platform', ids.dave);
  const error = await eventually(async () => (await account())?.lastError, 60_000, 'the team grant to fail');
  t.match(error, /has no GitHub username yet/, 'a team cannot be given to an email invitation');

  await api('PATCH', `/scim/v2/Users/${ids.dave}`, { schemas: [PATCH], Operations: [{ op: 'add', path: 'nickName', value: 'Dave-GH' }] });
  const pending = () => [...fake.invitations.values()].find((i) => i.login === 'Dave-GH');
  await eventually(async () => pending()?.teams.get('platform') === 'member', 60_000, 'the login to be invited into the organization and the team');
  t.match(await account(), { remoteId: 'dave-gh', state: 'active' }, 'the account moved to the login');
  t.notOk(emailInvitation(), 'the email invitation is cancelled');
  t.equal(pending()?.role, 'direct_member', 'the login has the role the invitation had');
  const orgLookups = fake.requests.filter((r) => r.method === 'GET' && r.path === '/orgs/acme/memberships/dave-gh').length;
  t.ok(orgLookups >= 2, `the org entitlement applied to the invitation was granted again to the login (${orgLookups} lookups)`);
  const recorded = await eventually(async () => {
    const { rows } = await database.db.query<{ n: number }>('SELECT count(*)::int AS n FROM account_grants WHERE user_id = $1', [ids.dave]);
    return rows[0]!.n === 2 ? rows[0]!.n : undefined;
  }, 30_000, 'both entitlements to be recorded as applied');
  t.equal(recorded, 2);
  t.match(await account(), { remoteId: 'dave-gh', lastError: null });
  fake.accept('Dave-GH');
  t.equal(fake.teams.get('platform')!.members.get('dave-gh'), 'member', 'once accepted, dave is in the team');
});

t.test('the official description was respected throughout', async (t) => {
  t.same(prism.violations(), [], 'Prism reported no violation');
});
