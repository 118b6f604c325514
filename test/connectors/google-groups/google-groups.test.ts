/**
 * The google-groups connector through @googleapis/admin and google-auth-library against a stateful
 * fake Google (./fake-google.ts): the contract kit, then domain-wide delegation (the signed
 * assertion, the scopes asked for, what each refusal says), memberships and roles, pagination, the
 * suspend policy, and how every kind of failure is classified, each reaching Google exactly once.
 */
import t from 'tap';
import { collectPages, runContractKit, sampleUser, seedThroughConnector } from '@scim-gateway/connector-sdk/kit';
import { PermanentError, TransientError, type ConnectorInstance, type EntitlementRef } from '@scim-gateway/connector-sdk';
import { instantiate, validateConfig } from '@scim-gateway/connector-sdk/registry';
import { createSecretResolver } from '@scim-gateway/connector-sdk';
import { googleGroupsConnector, scopesFor } from '../../../connectors/google-groups/index.js';
import { SCOPES, startFakeGoogle, type FakeGoogle } from './fake-google.js';
import { errorRecorder } from '../../helpers/errors.js';

const fake = await startFakeGoogle();
t.teardown(() => fake.close());
const ADMIN = `admin@${fake.domain}`;

/** Secrets as the worker would see them; tests change them to rotate keys. */
const env: Record<string, string | undefined> = { GG_KEY: fake.serviceAccount.keyJson() };

function connect(config: Record<string, unknown> = {}, target: FakeGoogle = fake): ConnectorInstance {
  return instantiate(
    googleGroupsConnector,
    { serviceAccountKey: 'env:GG_KEY', subject: ADMIN, rootUrl: target.url, oauthEndpoint: target.tokenUrl, ...config },
    { secret: createSecretResolver(env) },
  );
}

const ent = (group: string, role?: string): EntitlementRef => ({ id: `ent-${group}-${role ?? 'MEMBER'}`, target: { group, ...(role ? { role } : {}) } });

/** Every error message the tests saw, to check at the end that none carries a secret. */
const { messages, expectError } = errorRecorder();

const opsSince = (mark: number) => fake.requests.slice(mark).map((r) => r.op);

t.test('configuration', async (t) => {
  const base = { serviceAccountKey: 'env:K', subject: 'admin@example.com' };
  t.doesNotThrow(() => validateConfig(googleGroupsConnector, base), 'a key reference and a subject are enough');
  t.doesNotThrow(() => validateConfig(googleGroupsConnector, { clientEmail: 'sa@p.iam.gserviceaccount.com', privateKey: 'file:/run/secrets/k.pem', subject: 'a@example.com' }));
  t.throws(() => validateConfig(googleGroupsConnector, { ...base, serviceAccountKey: '{"private_key":"-----BEGIN"}' }), /\/serviceAccountKey/, 'a key in plain text is refused');
  t.throws(() => validateConfig(googleGroupsConnector, { ...base, privateKey: '-----BEGIN PRIVATE KEY-----' }), /\/privateKey/);
  t.throws(() => validateConfig(googleGroupsConnector, { ...base, subject: 'not an email' }), /\/subject/);
  t.throws(() => validateConfig(googleGroupsConnector, { ...base, suspend: true }), /\/suspend/, 'no unknown fields');
  t.throws(() => validateConfig(googleGroupsConnector, { ...base, customer: 'someone' }), /\/customer/);

  const secret = createSecretResolver({});
  const make = (config: Record<string, unknown>) => () => instantiate(googleGroupsConnector, config, { secret });
  t.throws(make({ ...base, clientEmail: 'sa@p.iam.gserviceaccount.com' }), /not both/);
  t.throws(make({ subject: 'a@example.com', clientEmail: 'sa@p.iam.gserviceaccount.com' }), /\/privateKey: give serviceAccountKey/);
  t.throws(make({ subject: 'a@example.com' }), /\/clientEmail/);
  t.throws(make({ ...base, rootUrl: 'http://admin.internal/' }), /\/rootUrl: must be an https URL/, 'plain http off loopback is refused');
  t.throws(make({ ...base, oauthEndpoint: 'https://u:p@oauth.internal/' }), /\/oauthEndpoint: must not contain credentials/);
  t.doesNotThrow(make({ ...base, rootUrl: 'http://127.0.0.1:9/', oauthEndpoint: 'http://localhost:9/token' }));
  const err = t.throws(make({ subject: 'a@example.com' }));
  t.equal((err as PermanentError).kind, 'invalidConfig');

  t.same(scopesFor({}), [SCOPES.groupMember, SCOPES.userReadonly], 'memberships and reading users by default');
  t.same(scopesFor({ suspendOnDeprovision: true }), [SCOPES.groupMember, SCOPES.user], 'writing users only when a policy needs it');
  t.same(scopesFor({ manageNames: true }), [SCOPES.groupMember, SCOPES.user]);
});

t.test('contract kit (suspend and names managed)', async (t) => {
  const user = sampleUser('kit1');
  // The person comes back: Workspace still has them suspended from an earlier offboarding.
  fake.addUser(user.email!, { suspended: true });
  fake.addGroup('kit@example.com');
  await runContractKit({
    test: t.test.bind(t),
    definition: googleGroupsConnector,
    connect: () => connect({ suspendOnDeprovision: true, manageNames: true }),
    entitlement: ent('kit@example.com'),
    user,
    ...seedThroughConnector(() => connect(), 3, (i) => {
      const seed = sampleUser(`kitseed${i}`);
      fake.addUser(seed.email!);
      return seed;
    }),
    // A suspended Workspace user keeps its group memberships; the engine revokes recorded grants first.
    disableKeepsGrants: true,
  });
  t.equal(fake.user(user.email!)?.suspended, true, 'deprovisioning left the Workspace user suspended');
  t.equal(fake.user(user.email!)?.name.displayName, `${user.displayName} (renamed)`, 'the display name followed the directory');
});

t.test('domain-wide delegation: the assertion, the subject, the scopes', async (t) => {
  const mark = fake.tokens.length;
  await connect().validate();
  t.match(fake.tokens.slice(mark), [{ iss: fake.serviceAccount.clientEmail, sub: ADMIN, scopes: [SCOPES.groupMember, SCOPES.userReadonly] }], 'one token, for the subject, with the default scopes');

  const suspending = connect({ suspendOnDeprovision: true });
  await suspending.validate();
  t.same(fake.tokens.at(-1)?.scopes, [SCOPES.groupMember, SCOPES.user], 'the user scope only with the suspend policy');

  // The key as client email + PEM, as some secret stores hold it (newlines escaped or not).
  env.GG_PEM = fake.serviceAccount.privateKeyPem.replace(/\n/g, '\\n');
  const pem = connect({ serviceAccountKey: undefined, clientEmail: fake.serviceAccount.clientEmail, privateKey: 'env:GG_PEM' });
  await t.resolves(pem.validate(), 'clientEmail + privateKey work too');

  // The token is cached: further calls need no new assertion.
  const c = connect();
  await c.validate();
  const tokensBefore = fake.tokens.length;
  await c.listAccounts!();
  await c.listAccounts!();
  t.equal(fake.tokens.length, tokensBefore, 'no new token while the last one is valid');

  // A rotated key file is used on the next call without a new instance.
  const rotated = fake.createServiceAccount({ delegatedScopes: [SCOPES.groupMember, SCOPES.userReadonly] });
  const saved = env.GG_KEY;
  env.GG_KEY = rotated.keyJson();
  t.teardown(() => {
    env.GG_KEY = saved;
  });
  await c.listAccounts!();
  t.equal(fake.tokens.at(-1)?.iss, rotated.clientEmail, 'the new key signed the next assertion');
  env.GG_KEY = saved;
});

t.test('delegation failures say what to fix', async (t) => {
  await t.test('a subject that is not a user of the domain: invalid_grant', async (t) => {
    const c = connect({ subject: `nobody@${fake.domain}` });
    const err = await expectError(c.validate(), PermanentError);
    t.equal(err.kind, 'unauthorized');
    t.match(err.message, 'invalid_grant: Invalid email or User ID');
    t.match(err.message, `nobody@${fake.domain} is an existing user of the domain`);
    const grant = await expectError(c.grant!(`x@${fake.domain}`, ent('kit@example.com')), PermanentError);
    t.equal(grant.kind, 'unauthorized', 'every call fails the same way');
  });

  await t.test('delegation not granted: unauthorized_client names the client id and the scopes', async (t) => {
    const undelegated = fake.createServiceAccount();
    env.GG_UNDELEGATED = undelegated.keyJson();
    const err = await expectError(connect({ serviceAccountKey: 'env:GG_UNDELEGATED' }).validate(), PermanentError);
    t.equal(err.kind, 'unauthorized');
    t.match(err.message, 'unauthorized_client');
    t.match(err.message, `client ID ${undelegated.clientId}`);
    t.match(err.message, 'Domain-wide delegation');
    t.match(err.message, `${SCOPES.groupMember},${SCOPES.userReadonly}`);
  });

  await t.test('a scope missing from the delegation: unauthorized_client', async (t) => {
    const partial = fake.createServiceAccount({ delegatedScopes: [SCOPES.groupMember, SCOPES.userReadonly] });
    env.GG_PARTIAL = partial.keyJson();
    await t.resolves(connect({ serviceAccountKey: 'env:GG_PARTIAL' }).validate(), 'enough for the default configuration');
    const err = await expectError(connect({ serviceAccountKey: 'env:GG_PARTIAL', suspendOnDeprovision: true }).validate(), PermanentError);
    t.match(err.message, `${SCOPES.groupMember},${SCOPES.user}`, 'the suspend policy needs admin.directory.user');
  });

  await t.test('a key Google does not know: invalid_grant on the signature', async (t) => {
    const stranger = fake.createServiceAccount({ delegatedScopes: Object.values(SCOPES) });
    env.GG_FORGED = JSON.stringify({ ...JSON.parse(fake.serviceAccount.keyJson()), private_key: stranger.privateKeyPem });
    const err = await expectError(connect({ serviceAccountKey: 'env:GG_FORGED' }).validate(), PermanentError);
    t.match(err.message, 'Invalid JWT Signature');
  });

  await t.test('a subject that is no administrator: 403 on the first call', async (t) => {
    fake.addUser(`plain.user@${fake.domain}`);
    const err = await expectError(connect({ subject: `plain.user@${fake.domain}` }).validate(), PermanentError);
    t.equal(err.kind, 'forbidden');
    t.match(err.message, 'Not Authorized to access this resource/api');
    t.match(err.message, `plain.user@${fake.domain} (the administrator the connector acts as) lacks an admin privilege`);
  });

  await t.test('keys that are not keys', async (t) => {
    env.GG_NOT_JSON = 'definitely not json';
    const a = await expectError(connect({ serviceAccountKey: 'env:GG_NOT_JSON' }).validate(), PermanentError);
    t.equal(a.kind, 'invalidConfig');
    t.notMatch(a.message, 'definitely not json', 'the secret is not quoted');
    env.GG_NOT_SA = JSON.stringify({ type: 'authorized_user', client_id: 'x', refresh_token: 'r' });
    t.equal((await expectError(connect({ serviceAccountKey: 'env:GG_NOT_SA' }).validate(), PermanentError)).kind, 'invalidConfig');
    env.GG_BAD_PEM = JSON.stringify({ ...JSON.parse(fake.serviceAccount.keyJson()), private_key: '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n' });
    const c = await expectError(connect({ serviceAccountKey: 'env:GG_BAD_PEM' }).validate(), PermanentError);
    t.equal(c.kind, 'invalidConfig');
    t.match(c.message, 'cannot sign');
    const missing = await expectError(connect({ serviceAccountKey: 'env:GG_UNSET' }).validate(), PermanentError);
    t.match(missing.message, 'env:GG_UNSET is not set');
  });
});

t.test('createAccount finds the Workspace user; it never creates one', async (t) => {
  const c = connect();
  const ann = fake.addUser(`ann@${fake.domain}`, { aliases: [`annie@${fake.domain}`] });
  let mark = fake.requests.length;
  const found = await c.createAccount!({ ...sampleUser('ann'), email: `Ann@${fake.domain}` });
  t.same(found, { status: 'alreadyApplied', remoteId: `ann@${fake.domain}` }, 'the primary email in lower case; nothing to change');
  t.same(opsSince(mark).filter((op) => op !== 'token'), ['users.get'], 'one read, no write');
  t.equal((await c.createAccount!({ ...sampleUser('annie'), email: `annie@${fake.domain}` })).remoteId, ann.primaryEmail, 'an alias finds the user by primary email');

  mark = fake.requests.length;
  const missing = await expectError(c.createAccount!({ ...sampleUser('ghost'), email: `ghost@${fake.domain}` }), PermanentError);
  t.equal(missing.kind, 'notFound');
  t.match(missing.message, `ghost@${fake.domain} is not a user of the Google Workspace domain; this connector does not create Workspace users`);
  t.notOk(opsSince(mark).includes('users.update'), 'nothing written');

  const byUserName = connect({ accountEmail: 'userName' });
  t.equal((await byUserName.createAccount!({ ...sampleUser('un'), userName: `ann@${fake.domain}`, email: 'ann.private@mail.example' })).remoteId, `ann@${fake.domain}`);
  const noEmail = await expectError(c.createAccount!({ ...sampleUser('none'), email: undefined }), PermanentError);
  t.equal(noEmail.kind, 'invalidInput');

  // Without a policy, a suspended user stays as Workspace has them.
  ann.suspended = true;
  t.equal((await c.createAccount!({ ...sampleUser('ann'), email: ann.primaryEmail })).status, 'alreadyApplied');
  t.equal(ann.suspended, true, 'not unsuspended without suspendOnDeprovision');
  ann.suspended = false;
});

t.test('memberships: insert, already a member, role changes, revoke', async (t) => {
  const c = connect();
  const bob = fake.addUser(`bob@${fake.domain}`).primaryEmail;
  fake.addGroup('eng@example.com');
  const member = ent('eng@example.com');
  const manager = ent('eng@example.com', 'MANAGER');

  let mark = fake.requests.length;
  t.equal((await c.grant!(bob, member)).status, 'applied');
  t.equal(fake.roleOf('eng@example.com', bob), 'MEMBER');
  t.same(opsSince(mark).filter((op) => op !== 'token'), ['members.insert']);

  mark = fake.requests.length;
  t.equal((await c.grant!(bob, member)).status, 'alreadyApplied', '409 Member already exists, same role');
  t.same(opsSince(mark).filter((op) => op !== 'token'), ['members.insert', 'members.get'], 'the duplicate insert is checked, not written');

  mark = fake.requests.length;
  t.equal((await c.grant!(bob, manager)).status, 'applied', 'MEMBER → MANAGER');
  t.equal(fake.roleOf('eng@example.com', bob), 'MANAGER');
  t.same(opsSince(mark).filter((op) => op !== 'token'), ['members.insert', 'members.get', 'members.patch'], 'by patching the role');
  t.equal((await c.grant!(bob, manager)).status, 'alreadyApplied');

  t.equal((await c.revoke!(bob, member)).status, 'alreadyApplied', 'revoking the MEMBER entitlement leaves the MANAGER in place');
  t.equal(fake.roleOf('eng@example.com', bob), 'MANAGER');
  t.same((await c.listGrants!(manager)).items, [bob]);
  t.same((await c.listGrants!(member)).items, [], 'MEMBER holders are only the members with that role');

  t.equal((await c.revoke!(bob, manager)).status, 'applied');
  t.equal(fake.roleOf('eng@example.com', bob), undefined);
  t.equal((await c.revoke!(bob, manager)).status, 'alreadyApplied', 'not a member');

  await t.test('state changed behind the connector', async (t) => {
    fake.addMember('eng@example.com', bob, 'MEMBER');
    t.equal((await c.grant!(bob, member)).status, 'alreadyApplied', 'added directly in Google: the insert answers 409');
    fake.removeMember('eng@example.com', bob);
    t.equal((await c.revoke!(bob, member)).status, 'alreadyApplied', 'removed directly in Google: the read answers 404');

    t.equal((await c.grant!(bob, member)).status, 'applied');
    fake.before('members.delete', () => fake.removeMember('eng@example.com', bob));
    mark = fake.requests.length;
    t.equal((await c.revoke!(bob, member)).status, 'alreadyApplied', 'removed between the read and the delete: 404 on delete');
    t.same(
      fake.requests.slice(mark).filter((r) => r.op === 'members.delete').map((r) => r.status),
      [404],
      'the delete did reach Google and was answered 404',
    );

    fake.before('members.get', () => fake.removeMember('eng@example.com', bob));
    fake.addMember('eng@example.com', bob, 'OWNER');
    const raced = await expectError(c.grant!(bob, member), TransientError);
    t.match(raced.message, 'changed meanwhile', 'removed between the 409 and the read: try again later');
    t.equal((await c.grant!(bob, member)).status, 'applied', 'and the retry inserts it');
  });

  await t.test('a missing group', async (t) => {
    const err = await expectError(c.grant!(bob, ent('no-such-group@example.com')), PermanentError);
    t.equal(err.kind, 'notFound');
    t.match(err.message, 'Resource Not Found: groupKey');
    t.match(err.message, 'does group no-such-group@example.com exist');
    t.equal((await c.revoke!(bob, ent('no-such-group@example.com'))).status, 'alreadyApplied', 'nothing to revoke');
    t.equal((await expectError(c.listGrants!(ent('no-such-group@example.com')), PermanentError)).kind, 'notFound');
  });

  await t.test('invalid entitlement targets are refused before any call', async (t) => {
    mark = fake.requests.length;
    const err = await expectError(c.grant!(bob, { id: 'bad', target: { group: 'eng@example.com', role: 'ADMIN' } }), PermanentError);
    t.equal(err.kind, 'invalidEntitlement');
    t.equal(fake.requests.length, mark, 'nothing sent');
    t.equal((await expectError(c.revoke!(bob, { id: 'bad', target: { name: 'x' } }), PermanentError)).kind, 'invalidEntitlement');
  });
});

t.test('listGrants and listAccounts page with Google page tokens', async (t) => {
  const c = connect({ pageSize: 2 });
  const g = fake.addGroup('big@example.com');
  const names = ['p1', 'p2', 'p3', 'p4', 'p5'].map((n) => fake.addUser(`${n}@${fake.domain}`).primaryEmail);
  for (const n of names) fake.addMember(g.email, n, n === 'p3@example.com' ? 'OWNER' : 'MEMBER');
  fake.addGroup('nested@example.com');
  fake.addMember(g.email, 'nested@example.com', 'MEMBER', 'GROUP');

  const mark = fake.requests.length;
  const first = await c.listGrants!(ent(g.email));
  t.equal(first.items.length, 2);
  t.ok(first.next, 'a next cursor: the page token');
  const all = await collectPages((cursor) => c.listGrants!(ent(g.email), cursor));
  t.same(all.sort(), names.filter((n) => n !== 'p3@example.com').sort(), 'every MEMBER once; the OWNER and the nested group left out');
  const lists = fake.requests.slice(mark).filter((r) => r.op === 'members.list');
  t.ok(lists.length >= 4, `several pages were read (${lists.length})`);
  t.match(lists[0]?.query, { roles: 'MEMBER', maxResults: '2' });
  t.ok(lists.slice(1).some((r) => r.query.pageToken === first.next), 'the cursor went back as pageToken');
  t.same(await collectPages((cursor) => c.listGrants!(ent(g.email, 'OWNER'), cursor)), ['p3@example.com']);
  const bad = await expectError(c.listGrants!(ent(g.email), 'not-a-token'), PermanentError);
  t.equal(bad.kind, 'rejected', 'a cursor Google does not know is refused by Google');

  const accounts = await collectPages((cursor) => c.listAccounts!(cursor));
  t.equal(accounts.length, fake.users.size, 'every Workspace user, across pages');
  t.equal(new Set(accounts.map((a) => a.remoteId)).size, accounts.length, 'each once');
  const admin = accounts.find((a) => a.remoteId === ADMIN);
  t.match(admin, { userName: ADMIN, email: ADMIN, active: true, attributes: { isAdmin: true } });
  const userLists = fake.requests.filter((r) => r.op === 'users.list');
  t.match(userLists.at(-1)?.query, { customer: 'my_customer', maxResults: '2' });

  await connect({ domain: fake.domain }).listAccounts!();
  t.match(fake.requests.filter((r) => r.op === 'users.list').at(-1)?.query, { domain: fake.domain });
  t.equal((await expectError(connect({ domain: 'other.example' }).listAccounts!(), PermanentError)).kind, 'notFound');
});

t.test('suspendOnDeprovision', async (t) => {
  const carol = fake.addUser(`carol@${fake.domain}`);
  const policy = connect({ suspendOnDeprovision: true });
  const plain = connect();

  let mark = fake.requests.length;
  t.equal((await plain.disableAccount!(carol.primaryEmail)).status, 'alreadyApplied', 'without the policy there is nothing to disable');
  t.equal(fake.requests.length, mark, 'and nothing is sent');
  t.equal(carol.suspended, false);

  t.equal((await policy.disableAccount!(carol.primaryEmail)).status, 'applied');
  t.equal(carol.suspended, true, 'suspended in Workspace');
  t.equal(carol.suspensionReason, 'ADMIN');
  mark = fake.requests.length;
  t.equal((await policy.disableAccount!(carol.primaryEmail)).status, 'alreadyApplied');
  t.notOk(opsSince(mark).includes('users.update'), 'no write when already suspended');
  t.equal((await policy.disableAccount!(`gone@${fake.domain}`)).status, 'alreadyApplied', 'a user who is gone is not active');

  t.equal((await plain.updateAccount!(carol.primaryEmail, { ...sampleUser('carol'), email: carol.primaryEmail })).status, 'alreadyApplied', 'without the policy the suspension is not ours to lift');
  t.equal(carol.suspended, true);
  t.equal((await policy.updateAccount!(carol.primaryEmail, { ...sampleUser('carol'), email: carol.primaryEmail })).status, 'applied', 'reactivation lifts it');
  t.equal(carol.suspended, false);
  t.equal((await policy.updateAccount!(carol.primaryEmail, { ...sampleUser('carol'), email: carol.primaryEmail })).status, 'alreadyApplied');

  const self = await expectError(policy.disableAccount!(ADMIN), PermanentError);
  t.equal(self.kind, 'forbidden');
  t.match(self.message, 'never suspended');
  t.equal(fake.user(ADMIN)?.suspended, false);

  const gone = await expectError(policy.updateAccount!(`gone@${fake.domain}`, sampleUser('gone')), PermanentError);
  t.equal(gone.kind, 'notFound');

  // Without the user scope delegated, suspension cannot happen: the token is refused up front.
  const readOnly = fake.createServiceAccount({ delegatedScopes: [SCOPES.groupMember, SCOPES.userReadonly] });
  env.GG_READONLY = readOnly.keyJson();
  const err = await expectError(connect({ serviceAccountKey: 'env:GG_READONLY', suspendOnDeprovision: true }).disableAccount!(carol.primaryEmail), PermanentError);
  t.match(err.message, 'unauthorized_client');
  t.equal(carol.suspended, false);
});

t.test('failures are classified, and Google is asked exactly once', async (t) => {
  const c = connect();
  const dave = fake.addUser(`dave@${fake.domain}`).primaryEmail;
  fake.addGroup('ops@example.com');
  await c.validate(); // a token in hand, so only the API call is counted below
  t.teardown(() => fake.clearFailures());
  const once = async (op: Parameters<FakeGoogle['count']>[0], fn: () => Promise<unknown>) => {
    const before = fake.count(op);
    const err = await fn().then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    t.equal(fake.count(op) - before, 1, `${op} reached Google once`);
    if (err) messages.push(err.message);
    return err;
  };

  await t.test('429 with Retry-After', async (t) => {
    fake.fail('members.insert', { status: 429, reason: 'rateLimitExceeded', message: 'Quota exceeded for quota metric', retryAfter: '7' });
    const err = await once('members.insert', () => c.grant!(dave, ent('ops@example.com')));
    t.type(err, TransientError);
    t.equal((err as TransientError).retryAfterMs, 7000);
    t.match(err?.message, 'HTTP 429 (rateLimitExceeded): Quota exceeded');
    t.equal(fake.roleOf('ops@example.com', dave), undefined, 'nothing changed');
    fake.fail('members.list', { status: 429, reason: 'rateLimitExceeded', message: 'Quota exceeded', retryAfter: '2' });
    const read = await once('members.list', () => c.listGrants!(ent('ops@example.com')));
    t.equal((read as TransientError).retryAfterMs, 2000, 'a read is not retried behind the engine either');
  });

  await t.test('403 rateLimitExceeded / userRateLimitExceeded / quotaExceeded are transient', async (t) => {
    for (const reason of ['rateLimitExceeded', 'userRateLimitExceeded', 'quotaExceeded']) {
      fake.fail('members.list', { status: 403, reason, message: `limit: ${reason}` });
      const err = await once('members.list', () => c.listGrants!(ent('ops@example.com')));
      t.type(err, TransientError, reason);
      t.equal((err as TransientError).retryAfterMs, undefined, 'no Retry-After, no wait given');
    }
  });

  await t.test('5xx is transient', async (t) => {
    fake.fail('users.get', { status: 503, reason: 'backendError', message: 'Service unavailable' });
    t.type(await once('users.get', () => c.createAccount!({ ...sampleUser('d'), email: dave })), TransientError);
    fake.fail('members.delete', { status: 500, message: 'boom' });
    await c.grant!(dave, ent('ops@example.com'));
    t.type(await once('members.delete', () => c.revoke!(dave, ent('ops@example.com'))), TransientError);
  });

  await t.test('403 forbidden is permanent with the message', async (t) => {
    fake.fail('members.insert', { status: 403, reason: 'forbidden', message: 'Not Authorized to access this resource/api' });
    const err = await once('members.insert', () => c.grant!(dave, ent('ops@example.com', 'OWNER')));
    t.type(err, PermanentError);
    t.equal((err as PermanentError).kind, 'forbidden');
    t.match(err?.message, 'google-groups: grant: members.insert ops@example.com failed: HTTP 403 (forbidden): Not Authorized');
  });

  await t.test('400 and 401 are permanent', async (t) => {
    fake.fail('users.update', { status: 400, reason: 'invalid', message: 'Invalid Given/Family Name' });
    const names = connect({ manageNames: true });
    const err = await once('users.update', () => names.updateAccount!(dave, { ...sampleUser('d'), email: dave, givenName: 'Dave' }));
    t.equal((err as PermanentError).kind, 'rejected');
    t.match(err?.message, 'Invalid Given/Family Name');
    fake.fail('users.list', { status: 401, reason: 'authError', message: 'Invalid Credentials' });
    t.equal(((await once('users.list', () => c.listAccounts!())) as PermanentError).kind, 'unauthorized');
  });

  await t.test('the token endpoint: 5xx and 429 transient, once', async (t) => {
    fake.fail('token', { status: 503, reason: 'temporarily_unavailable', message: 'try later', retryAfter: '3' });
    const fresh = connect();
    const err = await once('token', () => fresh.validate());
    t.type(err, TransientError);
    t.equal((err as TransientError).retryAfterMs, 3000);
    await t.resolves(fresh.validate(), 'and the next attempt works');
  });

  await t.test('no answer within timeoutMs is transient', async (t) => {
    const slow = connect({ timeoutMs: 200 });
    await slow.validate();
    fake.fail('members.list', { status: 500, delayMs: 2000 });
    const err = await once('members.list', () => slow.listGrants!(ent('ops@example.com')));
    t.type(err, TransientError);
    t.match(err?.message, 'no answer within 200 ms');
  });

  await t.test('network failures are transient', async (t) => {
    const gone = await startFakeGoogle();
    await gone.close();
    const err = await expectError(connect({}, gone).validate(), TransientError);
    t.match(err.message, /ECONNREFUSED/);
  });
});

t.test('no key or access token ever appears in an error', async (t) => {
  const keyBody = fake.serviceAccount.privateKeyPem.split('\n')[1]!;
  t.ok(messages.length >= 20, `checked ${messages.length} messages`);
  for (const message of messages) {
    t.notMatch(message, keyBody, `no key material in: ${message.slice(0, 80)}`);
    t.notMatch(message, 'ya29.', `no access token in: ${message.slice(0, 80)}`);
  }
});
