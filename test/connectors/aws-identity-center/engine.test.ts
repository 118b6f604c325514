/**
 * The aws-identity-center connector inside the whole engine (real Temporal dev server, PostgreSQL,
 * gateway, in-process worker) against the SigV4-checking fake of Identity Store and SSO Admin:
 * a SCIM user in a SCIM group → rule → group membership and permission-set assignment in the fake,
 * with a throttled call waited out and retried by the engine; reconcile finds drift made directly
 * in the fake and fixes it; deactivation deletes the user.
 */
import t from 'tap';
import { userBody } from '../../helpers/gateway.js';
import { eventually } from '../../helpers/temporal.js';
import { startTestStack } from '../../helpers/stack.js';
import { startFakeAws } from './fake-aws.js';

const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
const ACCOUNT = '444455556666';

const fake = await startFakeAws({ pageLimit: 2 });
t.teardown(() => fake.close());
// The in-process worker resolves env: references from this process's environment.
process.env.ENGINE_AWS_KEY_ID = [...fake.keys.keys()][0];
process.env.ENGINE_AWS_SECRET = [...fake.keys.values()][0];

const { gw } = await startTestStack(t, { idleMs: 500 });
const api = gw.call;
type Summary = { drift: Array<{ kind: string; action: string; count: number }> };
const count = (s: Summary, kind: string, action: string) => s.drift.find((d) => d.kind === kind && d.action === action)?.count ?? 0;

const permissionSet = fake.seedPermissionSet();
let aliceId = '';
const aliceRemote = () => fake.userByName('alice@example.com')?.UserId;
const holdsAssignment = (userId: string | undefined) => !!userId && fake.hasAssignment({ AccountId: ACCOUNT, PermissionSetArn: permissionSet, PrincipalId: userId });

t.test('setup: the connector, its entitlements and a rule', async (t) => {
  const saved = await api('PUT', '/api/connectors/aws', {
    id: 'aws',
    type: 'aws-identity-center',
    config: {
      region: fake.region,
      identityStoreId: fake.identityStoreId,
      instanceArn: fake.instanceArn,
      accessKeyId: 'env:ENGINE_AWS_KEY_ID',
      secretAccessKey: 'env:ENGINE_AWS_SECRET',
      identityStoreEndpoint: fake.endpoint,
      ssoAdminEndpoint: fake.endpoint,
      createGroups: true,
      pageSize: 2,
    },
    deprovision: 'delete',
  });
  t.equal(saved.type, 'aws-identity-center', 'registered as a built-in type');
  t.same(await api('POST', '/api/connectors/aws/test'), { ok: true }, 'test connection (validate) passes through the worker');
  await api('POST', '/api/entitlements', { connectorId: 'aws', name: 'eng', target: { group: 'Engineering' }, membership: 'authoritative' }, 201);
  await api('POST', '/api/entitlements', { connectorId: 'aws', name: 'admin', target: { permissionSet, accountId: ACCOUNT }, membership: 'authoritative' }, 201);
  const bad = await gw.scim({ method: 'POST', url: '/api/entitlements', headers: { 'content-type': 'application/json' }, payload: { connectorId: 'aws', name: 'x', target: { accountId: ACCOUNT } } });
  t.equal(bad.statusCode, 400, "a target that is neither a group nor an assignment is refused by the connector's schema");
  await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Eng' }, 201);
  await api('POST', '/api/rules', { name: 'eng', group: 'Eng', entitlements: ['aws/eng', 'aws/admin'] }, 201);
});

t.test('SCIM user in the group → Identity Store user, membership and assignment; throttling and IN_PROGRESS are waited out', async (t) => {
  fake.failNext(1, { operation: 'CreateGroupMembership', status: 429, type: 'ThrottlingException', message: 'Rate exceeded', retryAfterSeconds: 1 });
  fake.assignmentLatency = 1;
  t.teardown(() => {
    fake.assignmentLatency = 0;
  });
  const alice = await api('POST', '/scim/v2/Users', userBody('alice@example.com', { name: { givenName: 'Alice', familyName: 'Liddell' }, emails: [{ value: 'alice@example.com', primary: true }] }), 201);
  aliceId = alice.id;
  const [eng] = (await api('GET', `/scim/v2/Groups?filter=${encodeURIComponent('displayName eq "Eng"')}`)).Resources;
  await api('PATCH', `/scim/v2/Groups/${eng.id}`, { schemas: [PATCH], Operations: [{ op: 'add', path: 'members', value: [{ value: alice.id }] }] });

  await eventually(async () => fake.membersOf('Engineering').includes(aliceRemote() ?? '-') && holdsAssignment(aliceRemote()), 60_000, 'alice in Engineering and assigned the permission set');
  t.match(fake.users.get(aliceRemote()!), { UserName: 'alice@example.com', DisplayName: 'Alice Liddell', Name: { GivenName: 'Alice', FamilyName: 'Liddell' }, Emails: [{ Value: 'alice@example.com', Primary: true }] });
  const memberships = fake.requests.filter((r) => r.operation === 'CreateGroupMembership');
  t.same(
    memberships.map((r) => r.status),
    [429, 200],
    'the throttled membership reached AWS once, and once more after the engine waited',
  );
  const creates = fake.requests.filter((r) => r.operation === 'CreateAccountAssignment');
  t.equal(creates.length, 1, 'the assignment was requested once; the retry found it done');
  const status = await eventually(async () => {
    const s = await api('GET', `/api/users/${alice.id}/provisioning`);
    return s.find((a: { connectorId: string; state: string }) => a.connectorId === 'aws' && a.state === 'active') ? s : undefined;
  }, 30_000, 'the account recorded as active');
  t.equal(status.find((a: { connectorId: string }) => a.connectorId === 'aws').remoteId, aliceRemote(), 'the remote id is the Identity Store UserId');
});

t.test('reconcile finds drift made directly in Identity Center and fixes it', async (t) => {
  const remote = aliceRemote()!;
  const eng = fake.groupByName('Engineering')!;
  // Alice's membership removed by hand; a stranger added by hand; bob provisioned first so a page holds more than one user.
  const bob = await api('POST', '/scim/v2/Users', userBody('bob@example.com'), 201);
  const [engGroup] = (await api('GET', `/scim/v2/Groups?filter=${encodeURIComponent('displayName eq "Eng"')}`)).Resources;
  await api('PATCH', `/scim/v2/Groups/${engGroup.id}`, { schemas: [PATCH], Operations: [{ op: 'add', path: 'members', value: [{ value: bob.id }] }] });
  await eventually(async () => fake.membersOf('Engineering').length === 2 && holdsAssignment(fake.userByName('bob@example.com')?.UserId), 60_000, 'bob provisioned');

  for (const [id, m] of fake.memberships) if (m.UserId === remote) fake.memberships.delete(id);
  const stranger = fake.seedUser('stranger@example.com');
  fake.addMember(eng.GroupId, stranger.UserId);

  const run: Summary = await api('POST', '/api/connectors/aws/reconcile', { wait: true });
  t.equal(count(run, 'missingMembership', 'fixed'), 1, "alice's missing membership");
  t.equal(count(run, 'unexpectedMembership', 'fixed'), 1, 'the stranger in Engineering');
  t.equal(count(run, 'orphanAccount', 'reported'), 1, 'the stranger is an account the gateway does not know, left for a human');
  await eventually(async () => fake.membersOf('Engineering').includes(remote) && !fake.membersOf('Engineering').includes(stranger.UserId), 60_000, 'Identity Center to converge');
  t.ok(fake.users.has(stranger.UserId), 'the orphan user itself is untouched');
  t.ok(fake.requests.filter((r) => r.operation === 'ListUsers').length >= 2, 'users were read page by page');
});

t.test('deactivation revokes and, under the delete policy, deletes the user', async (t) => {
  const remote = aliceRemote()!;
  await api('PATCH', `/scim/v2/Users/${aliceId}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { active: false } }] });
  await eventually(async () => !fake.users.has(remote), 60_000, 'alice deleted from the identity store');
  t.notOk(holdsAssignment(remote), 'the assignment was revoked');
  t.notOk(fake.membersOf('Engineering').includes(remote), 'and the membership');
  t.ok(fake.userByName('bob@example.com'), 'bob is untouched');
});
