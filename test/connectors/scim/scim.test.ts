/**
 * The scim connector against a real third-party SCIM 2.0 server (SCIMMY with its Express routers,
 * see ./scimmy-server.ts): the contract kit, then what each operation sends and leaves in the
 * target, and how every kind of failure is classified.
 */
import t from 'tap';
import { collectPages, runContractKit, sampleUser, seedThroughConnector } from '@scim-gateway/connector-sdk/kit';
import { PermanentError, TransientError, type ConnectorInstance } from '@scim-gateway/connector-sdk';
import { instantiate, validateConfig } from '@scim-gateway/connector-sdk/registry';
import { createSecretResolver } from '@scim-gateway/connector-sdk';
import { filterString } from '../../../connectors/scim/client.js';
import { scimConnector } from '../../../connectors/scim/index.js';
import { startScimmyServer, type ScimmyServer } from './scimmy-server.js';
import { errorRecorder } from '../../helpers/errors.js';

const server = await startScimmyServer();
t.teardown(() => server.close());

/** A connector instance for `target` (default: the shared server), its token given as env:SCIM_TOKEN. */
function connect(config: Record<string, unknown> = {}, target: Pick<ScimmyServer, 'baseUrl' | 'token'> = server, token = target.token): ConnectorInstance {
  return instantiate(scimConnector, { baseUrl: target.baseUrl, token: 'env:SCIM_TOKEN', ...config }, { secret: createSecretResolver({ SCIM_TOKEN: token }) });
}


/** Every error message the tests saw, to check at the end that none carries a secret. */
const { messages, expectError } = errorRecorder();

const requestsSince = (mark: number) => server.requests.slice(mark);

t.test('filter strings are SCIM (JSON) string literals', async (t) => {
  t.equal(filterString('plain@example.com'), '"plain@example.com"');
  t.equal(filterString('o"dd\\name'), '"o\\"dd\\\\name"', 'quotes and backslashes escaped');
});

t.test('configuration', async (t) => {
  t.doesNotThrow(() => validateConfig(scimConnector, { baseUrl: 'https://scim.example.com/scim/v2', token: 'env:SCIM_TOKEN' }), 'minimal https config');
  t.throws(() => validateConfig(scimConnector, { baseUrl: 'https://scim.example.com', token: 'sk-plaintext-token' }), /\/token/, 'a plaintext token is refused by the schema');
  t.throws(() => validateConfig(scimConnector, { baseUrl: 'https://x', token: 'env:T', deprovision: 'delete' }), /\/deprovision/, 'no unknown fields');
  t.throws(() => validateConfig(scimConnector, { baseUrl: 'https://x', token: 'env:T', userNameAttribute: 'login' }), /userNameAttribute/);
  const secret = createSecretResolver({ T: 'x' });
  t.throws(() => instantiate(scimConnector, { baseUrl: 'http://scim.example.com/v2', token: 'env:T' }, { secret }), /must be an https URL/, 'plain http off loopback is refused');
  t.throws(() => instantiate(scimConnector, { baseUrl: 'https://u:p@scim.example.com/v2', token: 'env:T' }, { secret }), /credentials/);
  t.throws(() => instantiate(scimConnector, { baseUrl: 'https://scim.example.com/v2?x=1', token: 'env:T' }, { secret }), /query/);
  for (const local of ['http://localhost:8080/scim', 'http://127.0.0.1/scim', 'http://[::1]:9/scim']) {
    t.doesNotThrow(() => instantiate(scimConnector, { baseUrl: local, token: 'env:T' }, { secret }), `${local} is allowed`);
  }
  const err = t.throws(() => instantiate(scimConnector, { baseUrl: 'http://10.0.0.1/scim', token: 'env:T' }, { secret }));
  t.equal((err as PermanentError).kind, 'invalidConfig');
});

t.test('contract kit against SCIMMY', async (t) => {
  await runContractKit({
    test: t.test.bind(t),
    definition: scimConnector,
    connect: () => connect({ pageSize: 2 }),
    entitlement: { id: 'ent-eng', target: { group: 'engineering', create: true } },
    ...seedThroughConnector(() => connect(), 5),
    // A group's members come with the group, all at once; a deactivated user stays a member.
    grantsInOnePage: true,
    disableKeepsGrants: true,
  });
});

t.test('createAccount finds by userName or POSTs a SCIM user', async (t) => {
  const c = connect();
  const user = sampleUser('create1');
  const mark = server.requests.length;
  const created = await c.createAccount!(user);
  t.equal(created.status, 'applied');
  const stored = server.users.get(created.remoteId!);
  t.match(stored, {
    userName: user.userName,
    externalId: user.userId,
    active: true,
    displayName: user.displayName,
    name: { givenName: user.givenName, familyName: user.familyName },
    emails: [{ value: user.email, primary: true }],
  });
  const [lookup, post] = requestsSince(mark);
  t.match(lookup, { method: 'GET', path: '/Users', query: { filter: `userName eq "${user.userName}"` } }, 'looks the user up by userName first');
  t.match(post, { method: 'POST', path: '/Users', contentType: /^application\/scim\+json/, authorization: `Bearer ${server.token}` });

  // An account that already exists (made by someone else) is adopted as it is: nothing is written.
  const existing = server.seedUser({ userName: 'pre.existing@example.com', displayName: 'Old Name', active: false });
  const before = server.requests.length;
  const found = await c.createAccount!({ ...sampleUser('pre'), userName: 'pre.existing@example.com' });
  t.same(found, { status: 'alreadyApplied', remoteId: existing.id });
  t.same(
    requestsSince(before).map((r) => r.method),
    ['GET'],
    'only the lookup',
  );
  t.match(server.users.get(existing.id), { displayName: 'Old Name', active: false }, 'and nothing updated');

  // Characters that mean something in a URL or a filter survive the lookup.
  const odd = { ...sampleUser('odd'), userName: "o'neil+x&y=z eq @example.com" };
  const oddCreated = await c.createAccount!(odd);
  t.equal((await c.createAccount!(odd)).remoteId, oddCreated.remoteId, 'found again through the encoded filter');
});

t.test('userNameAttribute and externalIdSource', async (t) => {
  const c = connect({ userNameAttribute: 'email' });
  const user = { ...sampleUser('mail'), userName: 'jdoe', email: 'j.doe@example.com' };
  const res = await c.createAccount!(user);
  t.equal(server.users.get(res.remoteId!)?.userName, 'j.doe@example.com', 'the email becomes the userName');
  const err = await expectError(c.createAccount!({ ...user, email: undefined }), PermanentError);
  t.equal(err.kind, 'invalidInput');

  const idp = connect({ externalIdSource: 'externalId' });
  const linked = { ...sampleUser('idp'), externalId: 'idp-object-id-1' };
  const created = await idp.createAccount!(linked);
  t.equal(server.users.get(created.remoteId!)?.externalId, 'idp-object-id-1', "the directory's externalId is sent");
  t.equal((await idp.updateAccount!(created.remoteId!, linked)).status, 'alreadyApplied');
  t.equal((await expectError(idp.createAccount!(sampleUser('noext')), PermanentError)).kind, 'invalidInput', 'and required');
});

t.test('updateAccount changes only what differs, by PATCH or by PUT', async (t) => {
  const c = connect();
  const user = sampleUser('upd');
  const { remoteId } = await c.createAccount!(user);
  const id = remoteId!;

  let mark = server.requests.length;
  t.equal((await c.updateAccount!(id, user)).status, 'alreadyApplied', 'nothing differs');
  t.same(
    requestsSince(mark).filter((r) => r.method !== 'GET'),
    [],
    'and nothing is written',
  );

  mark = server.requests.length;
  t.equal((await c.updateAccount!(id, { ...user, displayName: 'Renamed', givenName: 'New' })).status, 'applied');
  const patch = requestsSince(mark).find((r) => r.method === 'PATCH');
  t.same(
    (patch?.body as { Operations: unknown[] }).Operations,
    [
      { op: 'replace', path: 'displayName', value: 'Renamed' },
      { op: 'replace', path: 'name.givenName', value: 'New' },
    ],
    'a PATCH with just the changed attributes',
  );
  t.match(server.users.get(id), { displayName: 'Renamed', name: { givenName: 'New', familyName: user.familyName } });

  // A disabled account is enabled again when the directory user is active.
  server.users.get(id)!.active = false;
  t.equal((await c.updateAccount!(id, { ...user, displayName: 'Renamed', givenName: 'New' })).status, 'applied');
  t.equal(server.users.get(id)?.active, true, 'reactivated');

  // A target without PATCH (per its ServiceProviderConfig) gets a PUT of the whole resource.
  server.patchSupported = false;
  t.teardown(() => {
    server.patchSupported = true;
  });
  const noPatch = connect();
  mark = server.requests.length;
  t.equal((await noPatch.updateAccount!(id, { ...user, displayName: 'Put Name', email: 'changed@example.com' })).status, 'applied');
  const writes = requestsSince(mark).filter((r) => r.method !== 'GET');
  t.same(
    writes.map((r) => r.method),
    ['PUT'],
  );
  t.match(writes[0]?.body, { userName: user.userName, externalId: user.userId, displayName: 'Put Name', emails: [{ value: 'changed@example.com' }] });
  t.notOk((writes[0]?.body as Record<string, unknown>).meta, 'meta is not sent back');
  t.match(server.users.get(id), { displayName: 'Put Name', name: { givenName: user.givenName }, emails: [{ value: 'changed@example.com' }] });
  t.equal((await noPatch.updateAccount!(id, { ...user, displayName: 'Put Name', email: 'changed@example.com' })).status, 'alreadyApplied');
  t.equal((await noPatch.disableAccount!(id)).status, 'applied', 'disable works by PUT too');
  t.equal(server.users.get(id)?.active, false);
  server.patchSupported = true;

  const gone = await expectError(c.updateAccount!('no-such-id', user), PermanentError);
  t.equal(gone.kind, 'notFound');
});

t.test('deprovisioning policies', async (t) => {
  // The engine deprovisions with deleteAccount under the "delete" policy and disableAccount under "disable".
  const c = connect();
  await t.test('disable sets active false and keeps the user', async (t) => {
    const { remoteId } = await c.createAccount!(sampleUser('dis'));
    t.equal((await c.disableAccount!(remoteId!)).status, 'applied');
    t.equal(server.users.get(remoteId!)?.active, false, 'inactive in the target');
    const mark = server.requests.length;
    t.equal((await c.disableAccount!(remoteId!)).status, 'alreadyApplied');
    t.same(
      requestsSince(mark).map((r) => r.method),
      ['GET'],
      'no write when already inactive',
    );
    t.equal((await c.disableAccount!('never-existed')).status, 'alreadyApplied', 'a missing account is not active');
  });
  await t.test('delete removes the user', async (t) => {
    const user = sampleUser('del');
    const { remoteId } = await c.createAccount!(user);
    await c.grant!(remoteId!, { id: 'e', target: { group: 'deleted-users-group', create: true } });
    t.equal((await c.deleteAccount!(remoteId!)).status, 'applied');
    t.notOk(server.users.has(remoteId!), 'gone from the target');
    t.notOk(server.findUserByName(user.userName));
    t.equal((await c.deleteAccount!(remoteId!)).status, 'alreadyApplied', '404 is alreadyApplied');
  });
});

t.test('grants are group memberships', async (t) => {
  const c = connect({ groupDisplayNamePrefix: 'gw-' });
  const { remoteId } = await c.createAccount!(sampleUser('grant'));
  const id = remoteId!;

  const missing = await expectError(c.grant!(id, { id: 'e1', target: { group: 'absent' } }), PermanentError);
  t.equal(missing.kind, 'notFound');
  t.match(missing.message, /gw-absent/);
  t.notOk(server.findGroupByName('gw-absent'), 'not created without create: true');

  const bad = await expectError(c.grant!(id, { id: 'e2', target: { name: 'x' } }), PermanentError);
  t.equal(bad.kind, 'invalidEntitlement');

  const existing = server.seedGroup({ displayName: 'gw-sre', members: [{ value: 'someone-else' }] });
  t.equal((await c.grant!(id, { id: 'e3', target: { group: 'sre' } })).status, 'applied');
  t.same(
    (server.groups.get(existing.id)?.members as { value: string }[]).map((m) => m.value).sort(),
    ['someone-else', id].sort(),
    'added beside the existing member',
  );
  t.same((await c.listGrants!({ id: 'e3', target: { group: 'sre' } })).items.sort(), ['someone-else', id].sort());
  t.equal((await c.revoke!(id, { id: 'e3', target: { group: 'sre' } })).status, 'applied');
  t.same(server.groups.get(existing.id)?.members, [{ value: 'someone-else' }], 'only our member removed');

  t.equal((await c.grant!(id, { id: 'e4', target: { group: 'new-team', create: true } })).status, 'applied');
  const created = server.findGroupByName('gw-new-team');
  t.ok(created, 'created with the prefix');
  t.same(created?.members, [{ value: id }]);

  server.groups.delete(created!.id);
  t.equal((await c.revoke!(id, { id: 'e4', target: { group: 'new-team' } })).status, 'alreadyApplied', 'group gone: nothing to revoke');
  t.same((await c.listGrants!({ id: 'e4', target: { group: 'new-team' } })).items, [], 'no group, no holders');

  // Targets that never return members (IAM Identity Center): always PATCH, never list.
  const blind = connect({ groupDisplayNamePrefix: 'gw-', readGroupMembers: false });
  const g = server.seedGroup({ displayName: 'gw-blind' });
  t.equal((await blind.grant!(id, { id: 'e5', target: { group: 'blind' } })).status, 'applied');
  t.equal((await blind.grant!(id, { id: 'e5', target: { group: 'blind' } })).status, 'applied', 'cannot tell, so PATCHes again');
  t.ok(
    (server.groups.get(g.id)?.members as { value: string }[]).every((m) => m.value === id),
    'the member is in the group',
  );
  const unsupported = await expectError(blind.listGrants!({ id: 'e5', target: { group: 'blind' } }), PermanentError);
  t.equal(unsupported.kind, 'unsupported');
});

t.test('listAccounts pages with startIndex and count', async (t) => {
  const own = await startScimmyServer();
  t.teardown(() => own.close());
  for (let i = 0; i < 25; i++) own.seedUser({ userName: `page.user.${String(i).padStart(2, '0')}@example.com`, active: i % 5 !== 0 });
  const c = connect({ pageSize: 10 }, own);
  const first = await c.listAccounts!();
  t.equal(first.items.length, 10);
  t.equal(first.next, '11');
  const second = await c.listAccounts!(first.next);
  t.equal(second.next, '21');
  const third = await c.listAccounts!(second.next);
  t.equal(third.items.length, 5);
  t.equal(third.next, undefined, 'the last page has no cursor');
  const all = await collectPages((cursor) => c.listAccounts!(cursor));
  t.equal(all.length, 25);
  t.equal(new Set(all.map((a) => a.remoteId)).size, 25, 'every account exactly once');
  t.equal(all.filter((a) => a.active === false).length, 5, 'active is reported');
  t.match(
    own.requests.filter((r) => r.path === '/Users').map((r) => r.query),
    [{ startIndex: '1', count: '10' }, { startIndex: '11', count: '10' }, { startIndex: '21', count: '10' }],
  );
  t.equal((await expectError(c.listAccounts!('zero'), PermanentError)).kind, 'invalidCursor');
});

t.test('failures are classified', async (t) => {
  const c = connect();
  const { remoteId } = await c.createAccount!(sampleUser('fail'));
  const id = remoteId!;
  t.teardown(() => server.clearFailures());

  await t.test('429 with Retry-After is transient with the wait', async (t) => {
    server.failNext(1, { status: 429, retryAfter: '7', detail: 'slow down' });
    const err = await expectError(c.disableAccount!(id), TransientError);
    t.equal(err.retryAfterMs, 7000);
    t.match(err.message, /429/);
  });

  await t.test('500 is transient', async (t) => {
    server.failNext(1, { status: 500, detail: 'database on fire' });
    const err = await expectError(c.listAccounts!(), TransientError);
    t.equal(err.retryAfterMs, undefined);
    t.match(err.message, /HTTP 500: database on fire/);
  });

  await t.test('403 is permanent "forbidden" with the SCIM detail', async (t) => {
    server.failNext(1, { status: 403, detail: 'token lacks the users:write scope', method: 'POST' });
    const err = await expectError(c.createAccount!(sampleUser('forbid')), PermanentError);
    t.equal(err.kind, 'forbidden');
    t.match(err.message, 'token lacks the users:write scope');
    t.match(err.message, /createAccount: POST \/Users/, 'says which call failed');
  });

  await t.test('400 is permanent with scimType and detail', async (t) => {
    server.failNext(1, { status: 400, scimType: 'invalidValue', detail: 'emails[0].value is not an email', method: 'PATCH' });
    const err = await expectError(c.updateAccount!(id, { ...sampleUser('fail'), displayName: 'x' }), PermanentError);
    t.equal(err.kind, 'rejected');
    t.match(err.message, 'invalidValue: emails[0].value is not an email');
  });

  await t.test('a wrong token is permanent "unauthorized", and validate says so', async (t) => {
    const wrong = connect({}, server, 'not-the-token');
    const err = await expectError(wrong.createAccount!(sampleUser('auth')), PermanentError);
    t.equal(err.kind, 'unauthorized');
    const v = await expectError(wrong.validate(), PermanentError);
    t.equal(v.kind, 'unauthorized');
    t.match(v.message, /ServiceProviderConfig/);
    t.notMatch(v.message, 'not-the-token');
    await t.resolves(connect().validate(), 'the right token validates');
  });

  await t.test('a base URL that is not a SCIM endpoint fails validate cleanly', async (t) => {
    const wrongPath = connect({}, { baseUrl: server.baseUrl.replace('/scim/v2', '/nothing-here'), token: server.token });
    const err = await expectError(wrongPath.validate(), PermanentError);
    t.equal(err.kind, 'notFound');
  });

  await t.test('an unreachable server is transient', async (t) => {
    const gone = await startScimmyServer();
    await gone.close();
    const c = connect({}, gone);
    const err = await expectError(c.validate(), TransientError);
    t.match(err.message, /ECONNREFUSED/);
    await expectError(c.createAccount!(sampleUser('unreach')), TransientError);
  });

  await t.test('a timeout is transient', async (t) => {
    const slow = connect({ timeoutMs: 200 });
    server.failNext(1, { status: 0, delayMs: 1000 });
    const err = await expectError(slow.listAccounts!(), TransientError);
    t.match(err.message, /no answer within 200 ms/);
  });

  await t.test('the token never appears in an error, even when the target echoes it', async (t) => {
    server.failNext(1, { status: 403, detail: `token ${server.token} is not allowed here` });
    const err = await expectError(c.disableAccount!(id), PermanentError);
    t.match(err.message, '[redacted]');
    for (const message of messages) t.notMatch(message, server.token, `no token in: ${message.slice(0, 80)}`);
    t.ok(messages.length >= 10, `checked ${messages.length} messages`);
  });
});
