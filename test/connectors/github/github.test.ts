/**
 * The github connector through @octokit/rest against the stateful fake GitHub (./fake-github.ts),
 * with every request and answer checked against GitHub's official OpenAPI description by a Prism
 * proxy in between (./prism.ts): the contract kit with a token and as an App, email invitations
 * and their move to a username (updateAccount), the deprovision policies, pagination, and how
 * rate limits and other failures are classified.
 */
import { generateKeyPairSync } from 'node:crypto';
import t from 'tap';
import { collectPages, runContractKit, sampleUser, seedThroughConnector } from '@scim-gateway/connector-sdk/kit';
import { PermanentError, TransientError, type AccountInput, type ConnectorInstance } from '@scim-gateway/connector-sdk';
import { instantiate, validateConfig } from '@scim-gateway/connector-sdk/registry';
import { createSecretResolver } from '@scim-gateway/connector-sdk';
import { classify, nextPageFromLink } from '../../../connectors/github/client.js';
import { githubConnector } from '../../../connectors/github/index.js';
import { readAttribute } from '../../../connectors/github/member.js';
import { startFakeGitHub } from './fake-github.js';
import { startPrism } from './prism.js';
import { errorRecorder } from '../../helpers/errors.js';

const EXT = 'urn:ietf:params:scim:schemas:extension:acme:2.0:User';
const TOKEN = 'ghp_fakeTokenForTests0123456789abcdef';
const APP_ID = 424242;
const INSTALLATION_ID = 77;
const keys = generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs1', format: 'pem' } });

const fake = await startFakeGitHub({ tokens: [TOKEN], app: { appId: APP_ID, publicKeyPem: keys.publicKey, installationId: INSTALLATION_ID } });
t.teardown(() => fake.close());
const prism = await startPrism(fake.url);
t.teardown(() => prism.close());

const secrets = createSecretResolver({ GH_TOKEN: TOKEN, GH_APP_KEY: keys.privateKey, GH_OTHER_KEY: generateKeyPairSync('rsa', { modulusLength: 2048, privateKeyEncoding: { type: 'pkcs1', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } }).privateKey });

function connect(config: Record<string, unknown> = {}): ConnectorInstance {
  return instantiate(githubConnector, { baseUrl: prism.url, org: 'acme', token: 'env:GH_TOKEN', usernameAttribute: `${EXT}:githubUsername`, pageSize: 2, ...config }, { secret: secrets });
}
function connectApp(config: Record<string, unknown> = {}): ConnectorInstance {
  return connect({ token: undefined, appId: APP_ID, privateKey: 'env:GH_APP_KEY', installationId: INSTALLATION_ID, ...config });
}

function person(login: string | undefined, suffix = login ?? Math.random().toString(36).slice(2, 8)): AccountInput {
  const base = sampleUser(suffix);
  return { ...base, attributes: { ...base.attributes, ...(login ? { [EXT]: { githubUsername: login } } : {}) } };
}

/** A person who exists on GitHub, for the kit to fill listings with. */
function seedPerson(login: string): AccountInput {
  fake.addUser(login);
  return person(login);
}

/** Every error message the tests saw, to check at the end that none carries a secret. */
const { messages, expectError } = errorRecorder();

/** Prism's complaints from here on, to check that no request or answer broke the description. */
let prismMark = 0;
const violations = (from: number) => prism.violations(from);

/**
 * The kit checks updateAccount by changing the display name, which GitHub does not keep: for this
 * connector only a changed username or address is an update, tested on its own below.
 */
const kitDefinition = { ...githubConnector, capabilities: githubConnector.capabilities.filter((c) => c !== 'updateAccount') };

t.test('configuration', async (t) => {
  t.doesNotThrow(() => validateConfig(githubConnector, { org: 'acme', token: 'env:GH_TOKEN' }), 'minimal token config');
  t.doesNotThrow(() => validateConfig(githubConnector, { org: 'acme', appId: 1, privateKey: 'file:/run/key.pem', installationId: 2 }), 'minimal App config');
  t.throws(() => validateConfig(githubConnector, { org: 'acme', token: 'ghp_plaintext' }), /\/token/, 'a plaintext token is refused');
  t.throws(() => validateConfig(githubConnector, { org: 'acme', token: 'env:T', deprovision: 'delete' }), /\/deprovision/);
  t.throws(() => validateConfig(githubConnector, { org: 'acme', token: 'env:T', extra: 1 }), /\/extra/, 'no unknown fields');
  t.throws(() => instantiate(githubConnector, { org: 'acme' }, { secret: secrets }), /give a token, or appId, privateKey and installationId/);
  t.throws(() => instantiate(githubConnector, { org: 'acme', appId: 1, installationId: 2 }, { secret: secrets }), /\/privateKey: App authentication needs privateKey/);
  t.throws(() => instantiate(githubConnector, { org: 'acme', token: 'env:T', appId: 1 }, { secret: secrets }), /not both/);
  t.throws(() => instantiate(githubConnector, { org: 'acme', token: 'env:T', baseUrl: 'http://github.example.com' }, { secret: secrets }), /must be an https URL/);
  t.throws(() => validateConfig(githubConnector, { org: 'acme', token: 'env:T', managedTeams: ['Not A Slug'] }), /managedTeams/);
});

t.test('helpers: SCIM attribute paths, Link headers', async (t) => {
  const user = { userName: 'a', nickName: 'nick', name: { givenName: 'G' }, [EXT]: { GitHubUsername: 'Octo' } };
  t.equal(readAttribute(user, `${EXT}:githubUsername`), 'Octo', 'extension attribute, case-insensitive');
  t.equal(readAttribute(user, 'name.givenName'), 'G');
  t.equal(readAttribute(user, 'nickName'), 'nick');
  t.equal(readAttribute(user, 'urn:x:missing:githubUsername'), undefined);
  t.equal(nextPageFromLink('<https://api.github.com/orgs/a/members?per_page=2&page=3>; rel="next", <https://api.github.com/orgs/a/members?per_page=2&page=9>; rel="last"'), 3);
  t.equal(nextPageFromLink('<https://api.github.com/orgs/a/members?page=1>; rel="prev"'), undefined);
  t.equal(nextPageFromLink(undefined), undefined);
});

t.test('contract kit with a personal access token, through Prism', async (t) => {
  fake.addUser('Kit-Token');
  fake.addTeam('kit-team');
  prismMark = prism.output().length;
  await runContractKit({
    test: t.test.bind(t),
    definition: kitDefinition,
    connect: () => connect(),
    entitlement: { id: 'ent-team', target: { team: 'kit-team', role: 'maintainer' } },
    user: person('Kit-Token'),
    ...seedThroughConnector(() => connect(), 3, (i) => seedPerson(`kit-token-seed${i}`)),
  });
  t.notOk(fake.members.has('kit-token') || [...fake.invitations.values()].some((i) => i.login === 'Kit-Token'), 'nothing left in the organization');
  t.ok(fake.requests.every((r) => r.authorization === `token ${TOKEN}` || r.path.startsWith('/app/')), 'the token is sent as GitHub expects');
  t.same(violations(prismMark), [], 'Prism found no violation of the official description');
});

t.test('contract kit as a GitHub App installation, through Prism', async (t) => {
  fake.addUser('kit-app');
  fake.addTeam('kit-app-team');
  const before = fake.installationTokens.length;
  const mark = fake.requests.length;
  await runContractKit({
    test: t.test.bind(t),
    definition: kitDefinition,
    connect: () => connectApp(),
    entitlement: { id: 'ent-admin', target: { org: 'admin' } },
    user: person('kit-app'),
    ...seedThroughConnector(() => connectApp(), 3, (i) => seedPerson(`kit-app-seed${i}`)),
  });
  // The kit repeats every write on a fresh instance, and each instance exchanges its own token.
  const issued = new Set(fake.installationTokens.slice(before).map((i) => `token ${i.token}`));
  t.ok(issued.size >= 1, 'installation tokens were issued');
  const sent = fake.requests.slice(mark).filter((r) => !r.path.startsWith('/app/'));
  t.ok(sent.length > 5 && sent.every((r) => issued.has(r.authorization ?? '')), 'every API call used an installation token');
  const one = connectApp();
  const tokensBefore = fake.installationTokens.length;
  await one.validate();
  await collectPages((cursor) => one.listAccounts!(cursor));
  t.equal(fake.installationTokens.length - tokensBefore, 1, 'one token serves every call of an instance');
  // The seeds leave the organization, so later tests see only their own people.
  for (let i = 0; i < 3; i++) await one.disableAccount!(`kit-app-seed${i}`);
  const exchange = fake.requests.slice(mark).find((r) => r.path === `/app/installations/${INSTALLATION_ID}/access_tokens`);
  t.match(exchange?.authorization, /^bearer [\w-]+\.[\w-]+\.[\w-]+$/, 'the token came from the App JWT (verified with the public key by the fake)');
  t.same(violations(prismMark), [], 'Prism found no violation of the official description');
});

t.test('App installation tokens are refreshed before they expire; bad App credentials are clear', async (t) => {
  const apiCalls = (mark: number) => fake.requests.slice(mark).filter((r) => !r.path.startsWith('/app/')).length;
  let before = fake.installationTokens.length;
  let mark = fake.requests.length;
  const c = connectApp();
  await c.validate();
  await c.validate();
  t.equal(fake.installationTokens.length - before, 1, `one token for ${apiCalls(mark)} calls: a fresh token is reused`);

  fake.options.installationTokenTtlMs = 30_000; // inside the refresh margin
  before = fake.installationTokens.length;
  mark = fake.requests.length;
  const short = connectApp();
  await short.validate();
  await short.validate();
  const issued = fake.installationTokens.length - before;
  t.ok(issued >= apiCalls(mark), `a token about to expire is replaced before use (${issued} tokens for ${apiCalls(mark)} calls)`);
  fake.options.installationTokenTtlMs = 3_600_000;

  const wrongKey = await expectError(connectApp({ privateKey: 'env:GH_OTHER_KEY' }).validate(), PermanentError);
  t.equal(wrongKey.kind, 'unauthorized', 'a JWT signed with another key is refused');
  const wrongInstallation = await expectError(connectApp({ installationId: 999 }).validate(), PermanentError);
  t.equal(wrongInstallation.kind, 'notFound');
  const notPem = await expectError(connectApp({ privateKey: 'env:GH_TOKEN' }).validate(), PermanentError);
  t.equal(notPem.kind, 'invalidConfig');
  t.match(notPem.message, /private key cannot be used/);
});

t.test('validate names what is wrong', async (t) => {
  await t.resolves(connect().validate());
  t.equal((await expectError(connect({ org: 'nope' }).validate(), PermanentError)).kind, 'notFound');
  const bad = await expectError(instantiate(githubConnector, { baseUrl: prism.url, org: 'acme', token: 'env:X' }, { secret: createSecretResolver({ X: 'ghp_wrong' }) }).validate(), PermanentError);
  t.equal(bad.kind, 'unauthorized');
  t.match(bad.message, /HTTP 401: Bad credentials/);
  fake.inject({ match: /^GET \/orgs\/acme\/invitations$/, status: 403, body: { message: 'Must be an organization owner', documentation_url: 'https://docs.github.com/rest' } });
  const notOwner = await expectError(connect().validate(), PermanentError);
  t.equal(notOwner.kind, 'forbidden');
  t.match(notOwner.message, /cannot manage its members/);
});

t.test('a user without a username is invited by email: listed, reconciled, cancelled', async (t) => {
  const c = connect();
  const user = { ...person(undefined, 'mailonly'), email: 'Mail.Only@example.com' };
  const created = await c.createAccount!(user);
  t.same(created, { status: 'applied', remoteId: 'email:mail.only@example.com' });
  const inv = [...fake.invitations.values()].find((i) => i.email === 'Mail.Only@example.com');
  t.match(inv, { login: null, role: 'direct_member' }, 'an invitation by email was sent');
  t.same(await c.createAccount!(user), { status: 'alreadyApplied', remoteId: 'email:mail.only@example.com' }, 'a pending invitation is found again');

  const accounts = await collectPages((cursor) => c.listAccounts!(cursor));
  t.match(accounts.find((a) => a.remoteId === 'email:mail.only@example.com'), { active: true, email: 'Mail.Only@example.com', attributes: { state: 'pending', invitationId: inv!.id } }, 'listed as pending');
  t.ok((await collectPages((cursor) => c.listGrants!({ id: 'o', target: { org: 'member' } }, cursor))).includes('email:mail.only@example.com'), 'holds org membership');
  t.equal((await c.grant!('email:mail.only@example.com', { id: 'o', target: { org: 'member' } })).status, 'alreadyApplied');
  const team = await expectError(c.grant!('email:mail.only@example.com', { id: 't', target: { team: 'kit-team' } }), PermanentError);
  t.equal(team.kind, 'unsupported');
  t.match(team.message, /has no GitHub username yet/);

  const teamsOnly = connect({ deprovision: 'teamsOnly' });
  t.equal((await teamsOnly.disableAccount!('email:mail.only@example.com')).status, 'alreadyApplied', 'teamsOnly keeps the invitation');
  t.equal((await c.disableAccount!('email:mail.only@example.com')).status, 'applied', 'removeFromOrg cancels it');
  t.notOk(fake.invitations.has(inv!.id), 'the invitation is gone');
  t.equal((await c.disableAccount!('email:mail.only@example.com')).status, 'alreadyApplied');
  t.equal((await c.grant!('email:mail.only@example.com', { id: 'o', target: { org: 'member' } })).status, 'applied', 'granting org membership again re-invites');

  const nobody = await expectError(c.createAccount!({ ...person(undefined, 'nomail'), email: undefined }), PermanentError);
  t.equal(nobody.kind, 'invalidInput');
});

t.test('updateAccount moves an email invitation to the username once it is known', async (t) => {
  fake.addUser('Late-Name');
  fake.addUser('other-name');
  const mark = prism.output().length;
  const c = connect();
  const user = { ...person(undefined, 'latename'), email: 'late@example.com' };
  t.same(await c.createAccount!(user), { status: 'applied', remoteId: 'email:late@example.com' });
  const invitation = [...fake.invitations.values()].find((i) => i.email === 'late@example.com')!;
  t.same(await c.updateAccount!('email:late@example.com', user), { status: 'alreadyApplied', remoteId: 'email:late@example.com' }, 'no username yet: nothing to move');

  const named = { ...user, attributes: { ...user.attributes, [EXT]: { githubUsername: 'Late-Name' } } };
  t.same(await c.updateAccount!('email:late@example.com', named), { status: 'applied', remoteId: 'late-name' }, 'moved to the login');
  t.match([...fake.invitations.values()].find((i) => i.login === 'Late-Name'), { role: 'direct_member' }, 'the login has a pending membership with the invitation\'s role');
  t.notOk(fake.invitations.has(invitation.id), 'the email invitation is cancelled');
  t.same(await c.updateAccount!('late-name', named), { status: 'alreadyApplied', remoteId: 'late-name' }, 'the moved account is up to date');
  t.same(await c.updateAccount!('email:late@example.com', named), { status: 'alreadyApplied', remoteId: 'late-name' }, 'a repeated move answers the same new remote id');
  t.same(await c.updateAccount!('late-name', user), { status: 'alreadyApplied', remoteId: 'late-name' }, 'an emptied username attribute keeps the membership');

  fake.accept('Late-Name');
  fake.members.set('late-name', 'admin');
  const renamed = { ...user, attributes: { ...user.attributes, [EXT]: { githubUsername: 'other-name' } } };
  t.same(await c.updateAccount!('late-name', renamed), { status: 'applied', remoteId: 'other-name' }, 'a changed username moves the account');
  t.match([...fake.invitations.values()].find((i) => i.login === 'other-name'), { role: 'admin' }, 'with the old login\'s organization role');
  t.equal(fake.members.get('late-name'), 'admin', 'the old login is not removed');
  t.same(await c.updateAccount!('late-name', renamed), { status: 'alreadyApplied', remoteId: 'other-name' });

  t.same(await c.createAccount!({ ...person(undefined, 'moved'), email: 'old@example.com' }), { status: 'applied', remoteId: 'email:old@example.com' });
  t.same(await c.updateAccount!('email:old@example.com', { ...person(undefined, 'moved'), email: 'new@example.com' }), { status: 'applied', remoteId: 'email:new@example.com' }, 'a changed address is invited instead');
  t.same([...fake.invitations.values()].filter((i) => i.email?.endsWith('@example.com') && /^(old|new)@/.test(i.email)).map((i) => i.email), ['new@example.com']);

  fake.inject({ match: /^DELETE \/orgs\/acme\/invitations\/\d+$/, status: 404, body: { message: 'Not Found', documentation_url: 'https://docs.github.com/rest' } });
  const withLogin = { ...person('moved-late', 'moved'), email: 'new@example.com' };
  const unknown = await expectError(c.updateAccount!('email:new@example.com', withLogin), PermanentError);
  t.equal(unknown.kind, 'notFound', 'a login GitHub does not know is a permanent failure');
  t.match(unknown.message, /no GitHub user "moved-late"/, 'saying so');
  t.equal(fake.faults.length, 1, 'nothing was cancelled');
  fake.addUser('moved-late');
  t.same(await c.updateAccount!('email:new@example.com', withLogin), { status: 'applied', remoteId: 'moved-late' }, 'an invitation already gone (404 on cancel) is fine');
  t.equal(fake.faults.length, 0, 'the cancel met the 404');
  fake.removeMember('late-name');
  for (const id of ['other-name', 'moved-late']) await c.disableAccount!(id);
  t.same(violations(mark), [], 'Prism found no violation of the official description');
});

t.test('deprovision policies: removeFromOrg and teamsOnly', async (t) => {
  fake.addTeam('red');
  fake.addTeam('blue');
  fake.addMember('ann', 'member', { red: 'member', blue: 'maintainer' });
  fake.addMember('ben', 'member', { red: 'member', blue: 'member' });
  fake.addMember('cat', 'member', { red: 'maintainer' });

  const only = connect({ deprovision: 'teamsOnly' });
  t.equal((await only.disableAccount!('ann')).status, 'applied');
  t.ok(fake.members.has('ann'), 'teamsOnly keeps the organization membership');
  t.notOk(fake.teams.get('red')!.members.has('ann') || fake.teams.get('blue')!.members.has('ann'), 'and removes every team (none listed: all are managed)');
  t.equal((await only.disableAccount!('ann')).status, 'alreadyApplied');

  const listed = connect({ deprovision: 'teamsOnly', managedTeams: ['red'] });
  t.equal((await listed.disableAccount!('ben')).status, 'applied');
  t.notOk(fake.teams.get('red')!.members.has('ben'), 'a managed team is left');
  t.ok(fake.teams.get('blue')!.members.has('ben'), 'an unmanaged team is kept');

  const remove = connect();
  t.equal((await remove.disableAccount!('Cat')).status, 'applied', 'usernames are case-insensitive');
  t.notOk(fake.members.has('cat'), 'removeFromOrg removes the member');
  t.notOk(fake.teams.get('red')!.members.has('cat'), 'and so their team memberships');
  t.equal((await remove.disableAccount!('cat')).status, 'alreadyApplied');
});

t.test('roles: org owner and team maintainer are exact; listings page through Link headers', async (t) => {
  const c = connect();
  for (const name of ['dan', 'eve', 'fay', 'gus', 'hal']) fake.addMember(name, 'member', { green: 'member' });
  fake.addMember('ivy', 'admin');
  fake.addUser('Jo');

  t.same(await c.createAccount!(person('dan')), { status: 'alreadyApplied', remoteId: 'dan' }, 'an existing member is adopted');
  t.same(await c.createAccount!(person('JO')), { status: 'applied', remoteId: 'jo' }, 'a non-member is added (pending)');
  t.match(fake.requests.at(-1), { method: 'PUT', path: '/orgs/acme/memberships/jo', body: { role: 'member' } });
  t.same(await c.createAccount!(person('ivy')), { status: 'alreadyApplied', remoteId: 'ivy' }, 'an owner stays an owner');
  t.equal(fake.members.get('ivy'), 'admin');

  const admin = { id: 'adm', target: { org: 'admin' } };
  t.equal((await c.grant!('dan', admin)).status, 'applied');
  t.equal(fake.members.get('dan'), 'admin');
  t.same((await collectPages((cur) => c.listGrants!(admin, cur))).sort(), ['dan', 'ivy']);
  t.equal((await c.revoke!('dan', admin)).status, 'applied');
  t.equal(fake.members.get('dan'), 'member', 'revoking the owner role demotes, the membership stays');
  t.equal((await c.revoke!('dan', { id: 'm', target: { org: 'member' } })).status, 'alreadyApplied', 'org membership itself ends only with deprovisioning');

  const maint = { id: 'gm', target: { team: 'green', role: 'maintainer' } };
  t.equal((await c.grant!('eve', maint)).status, 'applied');
  t.equal(fake.teams.get('green')!.members.get('eve'), 'maintainer');
  t.equal((await c.revoke!('eve', { id: 'g', target: { team: 'green' } })).status, 'alreadyApplied', 'a maintainer does not hold the member entitlement');
  t.same(await collectPages((cur) => c.listGrants!(maint, cur)), ['eve']);
  t.equal((await c.grant!('jo', { id: 'g', target: { team: 'green' } })).status, 'applied', 'a pending member can be put in a team');
  const green = await collectPages((cur) => c.listGrants!({ id: 'g', target: { team: 'green' } }, cur));
  t.same(green.sort(), ['dan', 'fay', 'gus', 'hal', 'jo'], 'members with the role, then pending ones');

  const mark = fake.requests.length;
  const accounts = await collectPages((cursor) => c.listAccounts!(cursor));
  const pages = fake.requests.slice(mark);
  t.ok(pages.filter((r) => r.path === '/orgs/acme/members').length >= 4, 'members came in pages of two');
  t.ok(pages.every((r) => r.query.per_page === '2'), 'per_page is the configured page size');
  t.same(new Set(accounts.map((a) => a.remoteId)).size, accounts.length, 'nobody listed twice');
  t.match(accounts.find((a) => a.remoteId === 'jo'), { active: true, attributes: { state: 'pending' } });
  t.match(accounts.find((a) => a.remoteId === 'ivy'), { active: true, attributes: { state: 'active' } });
  await t.rejects(c.listAccounts!('bogus:1'), { name: 'PermanentError', kind: 'invalidCursor' });

  const missing = await expectError(c.grant!('dan', { id: 'x', target: { team: 'no-such-team' } }), PermanentError);
  t.equal(missing.kind, 'notFound');
  t.match(missing.message, /no team "no-such-team"/);
  const ghost = await expectError(c.createAccount!(person('ghost-user')), PermanentError);
  t.match(ghost.message, /no GitHub user "ghost-user"/);
  t.equal((await expectError(c.grant!('dan', { id: 'x', target: { team: 'green', role: 'owner' } }), PermanentError)).kind, 'invalidEntitlement');
  t.same(violations(prismMark), [], 'Prism found no violation of the official description');
});

t.test('rate limits become TransientError with the wait GitHub asks for; nothing is retried', async (t) => {
  const c = connect();
  fake.addMember('kim');
  const reset = Math.floor(Date.now() / 1000) + 120;
  const count = (path: string) => fake.requests.filter((r) => r.path === path).length;

  fake.inject({ match: /memberships\/kim$/, status: 403, headers: { 'x-ratelimit-limit': '5000', 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(reset) }, body: { message: 'API rate limit exceeded for user ID 1.', documentation_url: 'https://docs.github.com/rest' } });
  let before = count('/orgs/acme/memberships/kim');
  const primary = await expectError(c.grant!('kim', { id: 'o', target: { org: 'member' } }), TransientError);
  t.ok(primary.retryAfterMs! > 100_000 && primary.retryAfterMs! <= 120_000, `primary limit waits until x-ratelimit-reset (${primary.retryAfterMs} ms)`);
  t.match(primary.message, /primary rate limit/);
  t.equal(count('/orgs/acme/memberships/kim') - before, 1, 'exactly one request reached GitHub');

  fake.inject({ match: /memberships\/kim$/, status: 403, headers: { 'retry-after': '7' }, body: { message: 'You have exceeded a secondary rate limit. Please wait a few minutes before you try again.', documentation_url: 'https://docs.github.com/rest' } });
  before = count('/orgs/acme/memberships/kim');
  const secondary = await expectError(c.grant!('kim', { id: 'o', target: { org: 'member' } }), TransientError);
  t.equal(secondary.retryAfterMs, 7000, 'secondary limit waits Retry-After');
  t.equal(count('/orgs/acme/memberships/kim') - before, 1, 'exactly one request reached GitHub');

  fake.inject({ match: /memberships\/kim$/, status: 403, body: { message: 'You have exceeded a secondary rate limit and have been temporarily blocked from content creation.', documentation_url: 'https://docs.github.com/rest' } });
  t.equal((await expectError(c.grant!('kim', { id: 'o', target: { org: 'member' } }), TransientError)).retryAfterMs, 60_000, 'a secondary limit without Retry-After waits a minute');

  fake.inject({ match: /memberships\/kim$/, status: 429, headers: { 'retry-after': '3' } });
  t.equal((await expectError(c.grant!('kim', { id: 'o', target: { org: 'member' } }), TransientError)).retryAfterMs, 3000, '429 with Retry-After');

  const classified = classify('github: x', { status: 403, response: { status: 403, headers: { 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': '1000' }, data: {} } }, [], 1_000_000);
  t.equal((classified as TransientError).retryAfterMs, 0, 'a reset already passed asks for no wait');
});

t.test('other failures: permanent with GitHub\'s reason, or transient', async (t) => {
  const c = connect();
  fake.addMember('lou');
  fake.inject({ match: /teams\/green\/memberships\/lou$/, status: 403, body: { message: 'You must be an organization owner or team maintainer to add a team membership.', documentation_url: 'https://docs.github.com/rest' } });
  const forbidden = await expectError(c.grant!('lou', { id: 'g', target: { team: 'green' } }), PermanentError);
  t.equal(forbidden.kind, 'forbidden');
  t.match(forbidden.message, 'You must be an organization owner or team maintainer');
  t.match(forbidden.message, /organization owner rights/);

  fake.inject({ match: /^POST \/orgs\/acme\/invitations$/, status: 422, body: { message: 'Validation Failed', errors: [{ resource: 'OrganizationInvitation', code: 'unprocessable', field: 'data', message: 'Over invitation rate limit' }], documentation_url: 'https://docs.github.com/rest' } });
  const rejected = await expectError(c.createAccount!({ ...person(undefined, 'rej'), email: 'rej@example.com' }), PermanentError);
  t.equal(rejected.kind, 'rejected');
  t.match(rejected.message, 'Validation Failed (Over invitation rate limit)');

  fake.inject({ match: /memberships\/lou$/, status: 502, body: { message: 'Server Error' } });
  t.type(await expectError(c.grant!('lou', { id: 'o', target: { org: 'member' } }), TransientError), TransientError, '5xx is transient');

  const down = instantiate(githubConnector, { baseUrl: 'http://127.0.0.1:1', org: 'acme', token: 'env:GH_TOKEN' }, { secret: secrets });
  t.type(await expectError(down.validate(), TransientError), TransientError, 'a refused connection is transient');

  t.notOk(messages.some((m) => m.includes(TOKEN) || m.includes('PRIVATE KEY')), 'no error carries a secret');
});

t.test('Prism enforces the description on requests and answers', async (t) => {
  const mark = fake.requests.length;
  const logMark = prism.output().length;
  const res = await fetch(`${prism.url}/orgs/acme/memberships/kim`, { method: 'PUT', headers: { authorization: `token ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ role: 'overlord' }) });
  t.equal(res.status, 422, 'a request the description forbids is refused');
  t.match(await res.text(), /role must be equal to one of the allowed values/);
  t.equal(fake.requests.length, mark, 'and never reaches the fake');

  fake.inject({ match: /^GET \/orgs\/acme$/, status: 200, body: { login: 'acme' } });
  const bad = await fetch(`${prism.url}/orgs/acme`, { headers: { authorization: `token ${TOKEN}` } });
  t.equal(bad.status, 500, 'an answer that breaks the description is replaced by an error');
  t.match(bad.headers.get('sl-violations'), /required property 'node_id'/);
  await new Promise((r) => setTimeout(r, 200));
  const reported = prism.violations(logMark);
  t.ok(reported.some((l) => /UNPROCESSABLE_ENTITY/.test(l)) && reported.some((l) => /VIOLATIONS/.test(l)), 'and reports both in its log');
  fake.inject({ match: /^GET \/orgs\/acme$/, status: 200, body: { login: 'acme' } });
  t.type(await expectError(connect().validate(), TransientError), TransientError, 'and the connector does not take it for an answer');
});
