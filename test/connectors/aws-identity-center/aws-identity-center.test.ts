/**
 * The aws-identity-center connector through the real AWS SDK clients against a stateful fake of
 * Identity Store and SSO Admin that verifies every SigV4 signature (./fake-aws.ts): the contract kit
 * for both entitlement kinds, idempotency, paging, asynchronous account assignments, and how every
 * kind of failure is classified. The worker's environment is made hostile on purpose (other AWS
 * credentials, retry settings and a metadata endpoint) to show the connector uses only its own
 * configuration.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { SignatureV4 } from '@smithy/signature-v4';
import { HttpRequest } from '@smithy/protocol-http';
import { collectPages, runContractKit, sampleUser, seedThroughConnector } from '@scim-gateway/connector-sdk/kit';
import { PermanentError, TransientError, type ConnectorInstance, type EntitlementRef } from '@scim-gateway/connector-sdk';
import { instantiate, validateConfig } from '@scim-gateway/connector-sdk/registry';
import { createSecretResolver } from '@scim-gateway/connector-sdk';
import { awsIdentityCenterConnector as def } from '../../../connectors/aws-identity-center/index.js';
import { IN_PROGRESS_RETRY_MS } from '../../../connectors/aws-identity-center/assignment.js';
import { NodeSha256, startFakeAws, type FakeAws } from './fake-aws.js';
import { errorRecorder } from '../../helpers/errors.js';

const KEY_ID = 'AKIAFAKEFAKEFAKE0001';
const SECRET = 'fake-secret-access-key-0001-abcdefghijklmnop';
const ACCOUNT = '111122223333';

// A metadata endpoint (IMDS) that counts every request: the SDK must never ask it for credentials.
let imdsHits = 0;
const imds = createServer((_req, res) => {
  imdsHits++;
  res.writeHead(404).end();
});
await new Promise<void>((resolve) => imds.listen(0, '127.0.0.1', resolve));
t.teardown(() => new Promise<void>((resolve) => imds.close(() => resolve())));

// What a worker's machine might carry: none of it may change what the connector does.
const home = mkdtempSync(join(tmpdir(), 'aws-ic-home-'));
writeFileSync(join(home, 'credentials'), '[default]\naws_access_key_id = AKIAFROMFILEFROMFILE\naws_secret_access_key = from-file\n');
writeFileSync(join(home, 'config'), '[default]\nregion = ap-south-1\nmax_attempts = 6\nretry_mode = adaptive\n');
Object.assign(process.env, {
  AWS_ACCESS_KEY_ID: 'AKIAFROMENVFROMENV00',
  AWS_SECRET_ACCESS_KEY: 'from-env',
  AWS_REGION: 'us-west-2',
  AWS_MAX_ATTEMPTS: '5',
  AWS_RETRY_MODE: 'standard',
  AWS_SHARED_CREDENTIALS_FILE: join(home, 'credentials'),
  AWS_CONFIG_FILE: join(home, 'config'),
  AWS_EC2_METADATA_SERVICE_ENDPOINT: `http://127.0.0.1:${(imds.address() as AddressInfo).port}`,
});

const fake = await startFakeAws();
t.teardown(() => fake.close());

const instances: ConnectorInstance[] = [];
t.teardown(async () => {
  for (const i of instances) await i.close?.();
});

/** A connector instance wired to `target` (default: the shared fake), its credentials given as env references. */
function connect(config: Record<string, unknown> = {}, target: FakeAws = fake, secret = SECRET, keyId = KEY_ID): ConnectorInstance {
  const instance = instantiate(
    def,
    {
      region: target.region,
      identityStoreId: target.identityStoreId,
      instanceArn: target.instanceArn,
      accessKeyId: 'env:IC_KEY_ID',
      secretAccessKey: 'env:IC_SECRET',
      identityStoreEndpoint: target.endpoint,
      ssoAdminEndpoint: target.endpoint,
      ...config,
    },
    { secret: createSecretResolver({ IC_KEY_ID: keyId, IC_SECRET: secret }) },
  );
  instances.push(instance);
  return instance;
}


/** Every error message the tests saw, to check at the end that none carries a secret. */
const { messages, expectError } = errorRecorder();

const ops = (mark: number) => fake.requestsSince(mark).map((r) => r.operation);
const group = (name: string, create?: boolean): EntitlementRef => ({ id: `ent-${name}`, target: { group: name, ...(create !== undefined && { create }) } });

t.test('configuration', async (t) => {
  const base = { region: 'eu-west-1', identityStoreId: 'd-0123456789', accessKeyId: 'env:K', secretAccessKey: 'env:S' };
  t.doesNotThrow(() => validateConfig(def, base), 'minimal configuration');
  t.throws(() => validateConfig(def, { ...base, secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' }), /\/secretAccessKey/, 'a plain secret key is refused by the schema');
  t.throws(() => validateConfig(def, { ...base, accessKeyId: 'AKIAIOSFODNN7EXAMPLE' }), /\/accessKeyId/, 'so is a plain key id');
  t.throws(() => validateConfig(def, { ...base, identityStoreId: 'store' }), /\/identityStoreId/);
  t.throws(() => validateConfig(def, { ...base, instanceArn: 'arn:aws:sso:::instance/nope' }), /\/instanceArn/);
  t.throws(() => validateConfig(def, { ...base, identityStoreEndpoint: 'https://u:p@host/' }), /\/identityStoreEndpoint/, 'no credentials in an endpoint');
  t.throws(() => validateConfig(def, { ...base, roleArn: 'arn:aws:iam::1:role/x' }), /\/roleArn/, 'no unknown fields');
  t.throws(() => validateConfig(def, { ...base, pageSize: 500 }), /\/pageSize/);
  const err = await expectError(connect({ secretAccessKey: 'env:IC_UNSET' }).validate(), PermanentError);
  t.equal(err.kind, 'invalidConfig', 'an unset secret is a configuration error');
  t.match(err.message, 'env:IC_UNSET');
});

t.test('credentials are read for every request, so a rotated key file is used at once', async (t) => {
  const own = await startFakeAws({ keys: { AKIAROTATEROTATE0001: 'first-secret-first-secret-first', AKIAROTATEROTATE0002: 'second-secret-second-secret-sec' } });
  t.teardown(() => own.close());
  const dir = mkdtempSync(join(tmpdir(), 'aws-ic-keys-'));
  const write = (id: string, secret: string) => {
    writeFileSync(join(dir, 'id'), id);
    writeFileSync(join(dir, 'secret'), secret);
  };
  write('AKIAROTATEROTATE0001', 'first-secret-first-secret-first');
  const c = instantiate(def, {
    region: own.region,
    identityStoreId: own.identityStoreId,
    accessKeyId: `file:${join(dir, 'id')}`,
    secretAccessKey: `file:${join(dir, 'secret')}`,
    identityStoreEndpoint: own.endpoint,
  });
  instances.push(c);
  await c.validate();
  write('AKIAROTATEROTATE0002', 'second-secret-second-secret-sec');
  await c.validate();
  t.same(
    own.requests.map((r) => `${r.accessKeyId} ${r.status}`),
    ['AKIAROTATEROTATE0001 200', 'AKIAROTATEROTATE0002 200'],
    'the second call is signed with the new key',
  );
});

t.test('contract kit: group memberships', async (t) => {
  await runContractKit({ test: t.test.bind(t), definition: def, connect: () => connect(), entitlement: group('contract-eng', true), ...seedThroughConnector(() => connect(), 7) });
});

t.test('contract kit: permission-set account assignments', async (t) => {
  const permissionSet = fake.seedPermissionSet();
  await runContractKit({
    test: t.test.bind(t),
    definition: def,
    connect: () => connect(),
    entitlement: { id: 'ent-admin', target: { permissionSet, accountId: ACCOUNT } },
    ...seedThroughConnector(() => connect(), 7),
  });
});

t.test('createAccount finds the user by userName before creating one', async (t) => {
  const c = connect();
  const user = { ...sampleUser('create1'), email: 'Create.One@example.com' };
  let mark = fake.requests.length;
  const created = await c.createAccount!(user);
  t.equal(created.status, 'applied');
  t.same(ops(mark), ['GetUserId', 'CreateUser'], 'one lookup, one create');
  t.match(fake.users.get(created.remoteId!), {
    UserName: user.userName,
    DisplayName: user.displayName,
    Name: { GivenName: user.givenName, FamilyName: user.familyName },
    Emails: [{ Value: 'Create.One@example.com', Type: 'work', Primary: true }],
  });

  mark = fake.requests.length;
  const again = await c.createAccount!({ ...user, userName: user.userName.toUpperCase() });
  t.same(again, { status: 'alreadyApplied', remoteId: created.remoteId }, 'found again, userName compared without case');
  t.same(ops(mark), ['GetUserId'], 'and nothing is written');

  // A create whose answer was lost: the user is already there when the engine retries.
  const seeded = fake.seedUser('lost.answer@example.com');
  t.same(await c.createAccount!({ ...sampleUser('lost'), userName: 'lost.answer@example.com' }), { status: 'alreadyApplied', remoteId: seeded.UserId });

  // Created by someone else between the lookup and the create: the conflict is adopted.
  fake.failNext(1, { operation: 'GetUserId', status: 404, type: 'ResourceNotFoundException', message: 'USER not found' });
  const raced = fake.seedUser('raced@example.com');
  mark = fake.requests.length;
  t.same(await c.createAccount!({ ...sampleUser('race'), userName: 'raced@example.com' }), { status: 'alreadyApplied', remoteId: raced.UserId });
  t.same(ops(mark), ['GetUserId', 'CreateUser', 'GetUserId']);

  // Identity Center requires names: a directory user without them gets its userName in their place.
  const bare = await c.createAccount!({ userId: 'u-bare', userName: 'bare@example.com', active: true, attributes: {} });
  t.match(fake.users.get(bare.remoteId!), { DisplayName: 'bare@example.com', Name: { GivenName: 'bare@example.com', FamilyName: 'bare@example.com' }, Emails: [] });

  const reserved = await expectError(c.createAccount!({ ...sampleUser('adm'), userName: 'Administrator' }), PermanentError);
  t.equal(reserved.kind, 'rejected', 'a ValidationException is permanent');
  t.match(reserved.message, /createAccount: CreateUser failed: HTTP 400 ValidationException: UserName Administrator is reserved/);
});

t.test('updateAccount sends only the attributes that differ', async (t) => {
  const c = connect();
  const user = sampleUser('upd');
  const { remoteId } = await c.createAccount!(user);
  const id = remoteId!;
  let mark = fake.requests.length;
  t.equal((await c.updateAccount!(id, user)).status, 'alreadyApplied');
  t.same(ops(mark), ['DescribeUser'], 'nothing differs: no UpdateUser');

  mark = fake.requests.length;
  t.equal((await c.updateAccount!(id, { ...user, givenName: 'New', email: 'new.mail@example.com' })).status, 'applied');
  const update = fake.requestsSince(mark).find((r) => r.operation === 'UpdateUser');
  t.same(
    update?.body.Operations,
    [
      { AttributePath: 'name.givenName', AttributeValue: 'New' },
      { AttributePath: 'emails', AttributeValue: [{ Value: 'new.mail@example.com', Type: 'work', Primary: true }] },
    ],
    'one attribute operation per changed attribute',
  );
  t.match(fake.users.get(id), { Name: { GivenName: 'New', FamilyName: user.familyName }, Emails: [{ Value: 'new.mail@example.com' }] });

  // Without names in the directory, the names in Identity Center are left as they are.
  t.equal((await c.updateAccount!(id, { ...user, givenName: undefined, familyName: undefined, displayName: undefined, email: 'new.mail@example.com' })).status, 'alreadyApplied');

  const other = await c.createAccount!(sampleUser('upd-other'));
  const taken = await expectError(c.updateAccount!(other.remoteId!, { ...sampleUser('upd-other'), userName: user.userName }), PermanentError);
  t.equal(taken.kind, 'conflict', 'a userName held by another user is a permanent conflict');
  fake.failNext(1, { operation: 'UpdateUser', status: 409, type: 'ConflictException', message: 'Concurrent modification', reason: 'CONCURRENT_MODIFICATION' });
  await expectError(c.updateAccount!(id, { ...user, givenName: 'Newer' }), TransientError);
  const gone = await expectError(c.updateAccount!('0123456789-00000000-0000-4000-8000-000000000000', user), PermanentError);
  t.equal(gone.kind, 'notFound');
});

t.test('deleteAccount removes the user; a missing user is alreadyApplied', async (t) => {
  const c = connect();
  const { remoteId } = await c.createAccount!(sampleUser('del'));
  await c.grant!(remoteId!, group('del-group', true));
  t.equal((await c.deleteAccount!(remoteId!)).status, 'applied');
  t.notOk(fake.users.has(remoteId!));
  t.same(fake.membersOf('del-group'), [], 'its memberships went with it');
  t.equal((await c.deleteAccount!(remoteId!)).status, 'alreadyApplied', 'ResourceNotFoundException is alreadyApplied');
});

t.test('deleteAccount lists the user\'s assignments once and deletes each without looking it up again', async (t) => {
  const c = connect();
  const { remoteId } = await c.createAccount!(sampleUser('del-assigned'));
  const id = remoteId!;
  const sets = [fake.seedPermissionSet(), fake.seedPermissionSet()];
  for (const [i, permissionSet] of sets.entries()) t.equal((await c.grant!(id, { id: `ent-del-${i}`, target: { permissionSet, accountId: ACCOUNT } })).status, 'applied');
  const mark = fake.requests.length;
  t.equal((await c.deleteAccount!(id)).status, 'applied');
  t.same(
    ops(mark),
    ['ListAccountAssignmentsForPrincipal', 'DeleteAccountAssignment', 'DeleteAccountAssignment', 'DeleteUser'],
    'one listing, two deletions, then the user',
  );
  for (const permissionSet of sets) t.notOk(fake.hasAssignment({ AccountId: ACCOUNT, PermissionSetArn: permissionSet, PrincipalId: id }), 'no assignment is left behind');
});

t.test('group memberships', async (t) => {
  const c = connect();
  const { remoteId } = await c.createAccount!(sampleUser('grp'));
  const id = remoteId!;

  const missing = await expectError(c.grant!(id, group('absent')), PermanentError);
  t.equal(missing.kind, 'notFound');
  t.match(missing.message, /group "absent" does not exist/);
  t.notOk(fake.groupByName('absent'), 'not created without createGroups or create: true');
  t.equal((await connect({ createGroups: true }).grant!(id, group('auto-made'))).status, 'applied', 'createGroups creates it');
  t.ok(fake.groupByName('auto-made'));
  t.equal((await expectError(connect({ createGroups: true }).grant!(id, group('not-made', false)), PermanentError)).kind, 'notFound', "the entitlement's create: false wins");

  const bad = await expectError(c.grant!(id, { id: 'e-bad', target: { name: 'x' } }), PermanentError);
  t.equal(bad.kind, 'invalidEntitlement');

  // Already a member (added directly in Identity Center): the conflict is alreadyApplied.
  const sre = fake.seedGroup('sre');
  const someone = fake.seedUser('someone.else@example.com');
  fake.addMember(sre.GroupId, someone.UserId);
  fake.addMember(sre.GroupId, id);
  let mark = fake.requests.length;
  t.equal((await c.grant!(id, group('sre'))).status, 'alreadyApplied');
  t.same(ops(mark), ['GetGroupId', 'CreateGroupMembership', 'GetGroupMembershipId'], 'the ConflictException is confirmed by the membership');

  // A ConflictException without a membership behind it is a concurrent change: retried.
  fake.failNext(1, { operation: 'CreateGroupMembership', status: 409, type: 'ConflictException', message: 'Concurrent modification', reason: 'CONCURRENT_MODIFICATION' });
  fake.seedGroup('race-group');
  const racing = await expectError(c.grant!(id, group('race-group')), TransientError);
  t.match(racing.message, /ConflictException: Concurrent modification/);

  t.equal((await c.revoke!(id, group('sre'))).status, 'applied');
  t.same(fake.membersOf('sre'), [someone.UserId], 'only our member removed');
  mark = fake.requests.length;
  t.equal((await c.revoke!(id, group('sre'))).status, 'alreadyApplied', 'not a member: alreadyApplied');
  t.same(ops(mark), ['GetGroupId', 'GetGroupMembershipId'], 'and nothing is deleted');
  t.equal((await c.revoke!(id, group('absent'))).status, 'alreadyApplied', 'no group: nothing to revoke');

  // The membership disappears between the lookup and the delete.
  fake.failNext(1, { operation: 'DeleteGroupMembership', status: 404, type: 'ResourceNotFoundException', message: 'GROUP_MEMBERSHIP not found' });
  await c.grant!(id, group('sre'));
  t.equal((await c.revoke!(id, group('sre'))).status, 'alreadyApplied', 'deleting a missing membership is alreadyApplied');
  t.same((await c.listGrants!(group('absent'))).items, [], 'a missing group has no holders');
});

t.test('listAccounts and listGrants page with NextToken', async (t) => {
  const own = await startFakeAws({ identityStoreId: 'd-9876543210', pageLimit: 3 });
  t.teardown(() => own.close());
  const users = Array.from({ length: 10 }, (_, i) => own.seedUser(`page.${String(i).padStart(2, '0')}@example.com`, { Emails: [{ Value: `p${i}@example.com`, Primary: true }] }));
  users[4]!.UserStatus = 'DISABLED';
  const c = connect({ pageSize: 50 }, own);

  const first = await c.listAccounts!();
  t.equal(first.items.length, 3, 'the service answers fewer than MaxResults');
  t.ok(first.next, 'and a NextToken');
  const all = await collectPages((cursor) => c.listAccounts!(cursor));
  t.equal(all.length, 10);
  t.equal(new Set(all.map((a) => a.remoteId)).size, 10, 'every user exactly once');
  t.match(all[0], { remoteId: users[0]!.UserId, userName: 'page.00@example.com', email: 'p0@example.com', active: true });
  t.equal(all.find((a) => a.remoteId === users[4]!.UserId)?.active, false, 'a DISABLED user is reported inactive');
  const calls = own.requests.filter((r) => r.operation === 'ListUsers');
  t.same(calls.slice(-4).map((r) => r.body.MaxResults), [50, 50, 50, 50], 'MaxResults is the configured page size');
  t.same(calls.slice(-4).map((r) => typeof r.body.NextToken), ['undefined', 'string', 'string', 'string'], 'NextToken is passed on');

  const g = own.seedGroup('big');
  for (const u of users.slice(0, 8)) own.addMember(g.GroupId, u.UserId);
  const holders = await collectPages((cursor) => c.listGrants!({ id: 'big', target: { group: 'big' } }, cursor));
  t.same(holders.sort(), users.slice(0, 8).map((u) => u.UserId).sort(), 'all members over three pages');
  t.equal(own.requests.filter((r) => r.operation === 'GetGroupId').length, 1, 'the group is looked up once, then the cursor carries it');
  t.equal((await expectError(c.listGrants!({ id: 'big', target: { group: 'big' } }, 'no-separator'), PermanentError)).kind, 'invalidCursor');
  t.equal((await expectError(c.listAccounts!('forged-token'), PermanentError)).kind, 'rejected', 'a token the service does not know is refused by it');
});

t.test('account assignments are asynchronous in AWS; the connector never waits', async (t) => {
  const c = connect();
  const permissionSet = fake.seedPermissionSet();
  const target = { permissionSet, accountId: ACCOUNT };
  const ent: EntitlementRef = { id: 'ent-ps', target };
  const { remoteId } = await c.createAccount!(sampleUser('assign'));
  const id = remoteId!;
  t.teardown(() => {
    fake.assignmentLatency = 0;
    fake.assignmentFailure = undefined;
  });

  fake.assignmentLatency = 1;
  const inProgress = await expectError(c.grant!(id, ent), TransientError);
  t.equal(inProgress.retryAfterMs, IN_PROGRESS_RETRY_MS, 'IN_PROGRESS asks the engine to come back shortly');
  t.match(inProgress.message, /still applying/);
  t.notOk(fake.hasAssignment({ ...target, AccountId: ACCOUNT, PermissionSetArn: permissionSet, PrincipalId: id }), 'not there yet');
  const mark = fake.requests.length;
  t.equal((await c.grant!(id, ent)).status, 'alreadyApplied', "the engine's retry finds it done");
  t.same(ops(mark), ['ListAccountAssignmentsForPrincipal'], 'without a second create');
  t.ok(fake.hasAssignment({ AccountId: ACCOUNT, PermissionSetArn: permissionSet, PrincipalId: id }));
  t.same(await collectPages((cursor) => c.listGrants!(ent, cursor)), [id]);

  // Still in progress when the engine retries: AWS's ConflictException is transient too.
  fake.assignmentLatency = 5;
  const other = fake.seedPermissionSet();
  const otherEnt: EntitlementRef = { id: 'ent-ps2', target: { permissionSet: other, accountId: ACCOUNT } };
  await expectError(c.grant!(id, otherEnt), TransientError);
  const conflict = await expectError(c.grant!(id, otherEnt), TransientError);
  t.match(conflict.message, /ConflictException: An operation on this account assignment is already in progress/);
  fake.assignmentLatency = 0;

  fake.assignmentLatency = 1;
  await expectError(c.revoke!(id, ent), TransientError);
  t.equal((await c.revoke!(id, ent)).status, 'alreadyApplied', 'a revocation AWS finished is alreadyApplied');
  t.notOk(fake.hasAssignment({ AccountId: ACCOUNT, PermissionSetArn: permissionSet, PrincipalId: id }));
  fake.assignmentLatency = 0;

  fake.assignmentFailure = 'Received a 404 status error: Not supported policy arn:aws:iam::aws:policy/Nope.';
  const failed = await expectError(c.grant!(id, ent), PermanentError);
  t.equal(failed.kind, 'rejected');
  t.match(failed.message, /Not supported policy/, "FAILED carries AWS's reason");
  fake.assignmentFailure = undefined;

  const unknownSet = await expectError(c.grant!(id, { id: 'x', target: { permissionSet: `${permissionSet.slice(0, -4)}zzzz`, accountId: ACCOUNT } }), PermanentError);
  t.equal(unknownSet.kind, 'notFound');
  t.equal((await c.revoke!('0123456789-00000000-0000-4000-8000-000000000000', ent)).status, 'alreadyApplied', 'a user that is gone holds nothing');
  const noInstance = await expectError(connect({ instanceArn: undefined }).grant!(id, ent), PermanentError);
  t.equal(noInstance.kind, 'invalidConfig');
  t.match(noInstance.message, /instanceArn/);
  t.equal((await expectError(c.grant!(id, { id: 'x', target: { permissionSet, accountId: '12345' } }), PermanentError)).kind, 'invalidEntitlement');
});

t.test('signatures are really checked', async (t) => {
  await t.test('a client with the wrong secret is refused', async (t) => {
    const mark = fake.requests.length;
    const err = await expectError(connect({}, fake, 'not-the-secret-key').validate(), PermanentError);
    t.equal(err.kind, 'unauthorized');
    t.match(err.message, /validate: ListUsers failed: HTTP 403 InvalidSignatureException: The request signature we calculated does not match/);
    t.same(fake.requestsSince(mark).map((r) => r.status), [403], 'refused by the fake, once');
  });

  await t.test('an unknown access key is refused', async (t) => {
    const err = await expectError(connect({}, fake, SECRET, 'AKIAUNKNOWNUNKNOWN00').createAccount!(sampleUser('nokey')), PermanentError);
    t.equal(err.kind, 'unauthorized');
    t.match(err.message, /UnrecognizedClientException: The security token included in the request is invalid/);
  });

  // Raw requests, signed here, so that what is sent can differ from what was signed.
  const signer = new SignatureV4({
    credentials: { accessKeyId: KEY_ID, secretAccessKey: SECRET },
    region: fake.region,
    service: 'identitystore',
    sha256: NodeSha256,
  });
  const url = new URL(fake.endpoint);
  async function send(signedBody: string, sentBody: string, signingDate?: Date) {
    const request = new HttpRequest({
      method: 'POST',
      protocol: 'http:',
      hostname: url.hostname,
      port: Number(url.port),
      path: '/',
      headers: { host: url.host, 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'AWSIdentityStore.ListUsers' },
      body: signedBody,
    });
    const signed = await signer.sign(request, signingDate ? { signingDate } : {});
    const res = await fetch(`${fake.endpoint}/`, { method: 'POST', headers: signed.headers, body: sentBody });
    return { status: res.status, type: res.headers.get('x-amzn-errortype'), body: (await res.json()) as Record<string, unknown> };
  }
  const body = JSON.stringify({ IdentityStoreId: fake.identityStoreId, MaxResults: 1 });

  await t.test('a correctly signed raw request is accepted', async (t) => {
    const res = await send(body, body);
    t.equal(res.status, 200);
    t.ok(Array.isArray(res.body.Users));
  });

  await t.test('a tampered body is refused', async (t) => {
    const res = await send(body, JSON.stringify({ IdentityStoreId: fake.identityStoreId, MaxResults: 100 }));
    t.equal(res.status, 403);
    t.match(res.type, /^InvalidSignatureException:/);
    t.match(res.body, { __type: /InvalidSignatureException$/, message: /does not match/ });
  });

  await t.test('a stale X-Amz-Date is refused', async (t) => {
    const res = await send(body, body, new Date(Date.now() - 10 * 60 * 1000));
    t.equal(res.status, 403);
    t.match(res.body.message, /Signature expired/);
  });
});

t.test('failures are classified', async (t) => {
  const c = connect();
  const { remoteId } = await c.createAccount!(sampleUser('fail'));
  const id = remoteId!;
  t.teardown(() => fake.clearFailures());

  await t.test('ThrottlingException is transient with the wait AWS asked for, and reached AWS once', async (t) => {
    fake.failNext(1, { operation: 'ListUsers', status: 429, type: 'ThrottlingException', message: 'Rate exceeded', retryAfterSeconds: 7 });
    const mark = fake.requests.length;
    const err = await expectError(c.listAccounts!(), TransientError);
    t.equal(err.retryAfterMs, 7000);
    t.match(err.message, /listAccounts: ListUsers failed: HTTP 429 ThrottlingException: Rate exceeded/);
    t.same(ops(mark), ['ListUsers'], 'no SDK retry, despite AWS_MAX_ATTEMPTS=5 and max_attempts=6 in the environment');
  });

  await t.test('InternalServerException is transient', async (t) => {
    fake.failNext(1, { status: 500, type: 'InternalServerException', message: 'Internal failure' });
    const mark = fake.requests.length;
    const err = await expectError(c.updateAccount!(id, sampleUser('fail')), TransientError);
    t.equal(err.retryAfterMs, undefined);
    t.equal(fake.requestsSince(mark).length, 1, 'exactly one request');
  });

  await t.test('AccessDeniedException is permanent "forbidden" with the reason', async (t) => {
    fake.failNext(1, { operation: 'CreateGroupMembership', status: 403, type: 'AccessDeniedException', message: 'User: arn:aws:iam::111122223333:user/gw is not authorized to perform: identitystore:CreateGroupMembership' });
    const err = await expectError(c.grant!(id, group('denied-group', true)), PermanentError);
    t.equal(err.kind, 'forbidden');
    t.match(err.message, /grant: CreateGroupMembership failed: HTTP 403 AccessDeniedException: .*not authorized to perform: identitystore:CreateGroupMembership/);
  });

  await t.test('validate names an unknown identity store or a mismatched instance', async (t) => {
    const err = await expectError(connect({ identityStoreId: 'd-1111111111' }).validate(), PermanentError);
    t.equal(err.kind, 'invalidConfig');
    t.match(err.message, /ResourceNotFoundException: Identity store d-1111111111 not found \(is identityStoreId d-1111111111 right/);
    const other = await startFakeAws({ identityStoreId: 'd-2222222222' });
    t.teardown(() => other.close());
    const mismatch = await expectError(connect({ identityStoreId: fake.identityStoreId, ssoAdminEndpoint: other.endpoint }).validate(), PermanentError);
    t.equal(mismatch.kind, 'invalidConfig');
    t.match(mismatch.message, /uses identity store d-2222222222/);
    const noInstance = await expectError(connect({ instanceArn: 'arn:aws:sso:::instance/ssoins-ffffffffffffffff' }).validate(), PermanentError);
    t.equal(noInstance.kind, 'notFound');
    await t.resolves(connect().validate(), 'the right configuration validates');
    await t.resolves(connect({ instanceArn: undefined }).validate(), 'without instanceArn only the identity store is checked');
  });

  await t.test('an unreachable endpoint and a deadline are transient', async (t) => {
    const gone = await startFakeAws();
    await gone.close();
    const err = await expectError(connect({}, gone).validate(), TransientError);
    t.match(err.message, /ECONNREFUSED/);
    const slow = createServer(() => {
      // never answers
    });
    await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
    t.teardown(() => {
      slow.closeAllConnections();
      slow.close();
    });
    const late = await expectError(connect({ identityStoreEndpoint: `http://127.0.0.1:${(slow.address() as AddressInfo).port}`, timeoutMs: 200 }).validate(), TransientError);
    t.match(late.message, /validate: ListUsers failed/);
  });

  await t.test('credentials never appear in an error', async (t) => {
    fake.failNext(1, { status: 403, type: 'AccessDeniedException', message: `key ${KEY_ID} with secret ${SECRET} may not do this` });
    const err = await expectError(c.listAccounts!(), PermanentError);
    t.match(err.message, 'key [redacted] with secret [redacted]');
    for (const message of messages) {
      t.notMatch(message, SECRET, `no secret in: ${message.slice(0, 80)}`);
      t.notMatch(message, KEY_ID, `no key id in: ${message.slice(0, 80)}`);
    }
    t.ok(messages.length >= 20, `checked ${messages.length} messages`);
  });
});

t.test('the SDK used nothing from the environment', async (t) => {
  t.equal(imdsHits, 0, 'the instance metadata service was never asked');
  const keys = new Set(fake.requests.map((r) => r.accessKeyId).filter(Boolean));
  t.same([...keys].sort(), ['AKIAUNKNOWNUNKNOWN00', KEY_ID].sort(), 'only configured access keys signed requests, never AWS_ACCESS_KEY_ID or ~/.aws/credentials');
});
