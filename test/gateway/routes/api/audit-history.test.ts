/**
 * The audit trail as an answer to "who had access when": group events carry the member delta,
 * grant and account changes name their user and actor, connector replacements record what they
 * replaced, one query gives a user's whole history, and a user's access at a past instant is
 * rebuilt from it, also after the user is deactivated and deleted. Provisioning's own functions
 * (rule grants, account steps) run directly against the connector fixture, without Temporal.
 */
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { verifyAuditChain } from '../../../../core/audit/chain.js';
import { ConnectorRuntime } from '../../../../workflows/activities/connector-runtime.js';
import { applyStep, planUserSync } from '../../../../workflows/activities/provisioning.js';
import { memoryTarget } from '../../../fixtures/memory-connector.js';
import { createTestDatabase } from '../../../helpers/db.js';
import { startTestGateway, userBody } from '../../../helpers/gateway.js';
import { uniqueTaskQueue } from '../../../helpers/temporal.js';
import type { AuditEvent } from '../../../../core/audit/chain.js';

const PLUGIN = fileURLToPath(new URL('../../../fixtures/memory-connector.ts', import.meta.url));
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';

const database = await createTestDatabase(t);
const gw = await startTestGateway(t, {
  database,
  temporalAddress: '127.0.0.1:1',
  taskQueue: uniqueTaskQueue(),
  dispatchOutbox: false,
  scopes: ['scim:read', 'scim:write', 'admin'],
});
const api = gw.call;
const runtime = new ConnectorRuntime(database.db);
const ns = `history-${uniqueTaskQueue()}`;
const target = memoryTarget(ns);

/** An event as the API returns it, with the stored JSON read as objects. */
type Event = Omit<AuditEvent, 'before' | 'after'> & { before: Record<string, unknown> | null; after: Record<string, unknown> | null };
async function events(query: string): Promise<Event[]> {
  return (await api('GET', `/api/audit?limit=1000&${query}`)).events;
}
const last = (list: Event[]) => list[list.length - 1]!;

const ids: Record<string, string> = {};

t.test('setup', async () => {
  for (const name of ['alice', 'bob']) ids[name] = (await api('POST', '/scim/v2/Users', userBody(`${name}@example.com`), 201)).id;
  ids.eng = (await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Eng', members: [{ value: ids.bob }] }, 201)).id;
});

t.test('group events record which members were added and removed', async (t) => {
  const patch = (op: Record<string, unknown>) => api('PATCH', `/scim/v2/Groups/${ids.eng}`, { schemas: [PATCH], Operations: [op] });
  const created = last(await events(`action=group.created&resourceId=${ids.eng}`));
  t.same(created.after!.members, [{ value: ids.bob, type: 'User', display: 'bob@example.com' }], 'group.created lists the initial members');

  await patch({ op: 'add', path: 'members', value: [{ value: ids.alice }] });
  let e = last(await events(`action=group.patched&resourceId=${ids.eng}`));
  t.same(e.after!.membersAdded, [{ value: ids.alice, type: 'User', display: 'alice@example.com' }], 'the added member, with the userName');
  t.same(e.after!.membersRemoved, []);

  await patch({ op: 'remove', path: `members[value eq "${ids.bob}"]` });
  e = last(await events(`action=group.patched&resourceId=${ids.eng}`));
  t.same(e.after!.membersAdded, []);
  t.same(e.after!.membersRemoved, [{ value: ids.bob, type: 'User', display: 'bob@example.com' }], 'the removed member, with the userName');
  t.notSame(e.before, e.after, 'before and after differ for a members-only change');

  await api('PUT', `/scim/v2/Groups/${ids.eng}`, { schemas: [GROUP], displayName: 'Eng', members: [{ value: ids.alice }, { value: ids.bob }] });
  e = last(await events(`action=group.replaced&resourceId=${ids.eng}`));
  t.same(e.after!.membersAdded, [{ value: ids.bob, type: 'User', display: 'bob@example.com' }], 'PUT records its delta too');
  t.same(e.after!.membersRemoved, []);
});

t.test('replacing a connector records what it replaced; no secret is in the audit log', async (t) => {
  await api('PUT', '/api/connectors/mem', { id: 'mem', type: PLUGIN, config: { namespace: ns } });
  let e = last(await events('action=connector.saved&resourceId=mem'));
  t.equal(e.before, null, 'a new connector has nothing before');
  await api('PUT', '/api/connectors/mem', { id: 'mem', type: PLUGIN, config: { namespace: ns, pageSize: 5 }, mode: 'enforce' });
  e = last(await events('action=connector.saved&resourceId=mem'));
  t.match(e.before, { id: 'mem', config: { namespace: ns } }, 'the replaced configuration');
  t.notOk((e.before!.config as Record<string, unknown>).pageSize, 'before is the old configuration');
  t.match(e.after, { config: { namespace: ns, pageSize: 5 } });

  const leak = await gw.scim({ method: 'PUT', url: '/api/connectors/mem', payload: { id: 'mem', type: PLUGIN, config: { namespace: ns, token: 'hunter2' } }, headers: { 'content-type': 'application/json' } });
  t.equal(leak.statusCode, 400, `a plaintext secret is refused before anything is written: ${leak.body}`);
  const all = JSON.stringify(await events('resourceType=Connector'));
  t.notOk(all.includes('hunter2'), 'the refused secret is not in the audit log');
});

const checkpoints: Record<string, string> = {};

t.test("rule, manual grant and account changes are audited with their actor and found by the user's id", async (t) => {
  const eng = await api('POST', '/api/entitlements', { connectorId: 'mem', name: 'eng', target: { group: 'eng' }, membership: 'authoritative' }, 201);
  const wiki = await api('POST', '/api/entitlements', { connectorId: 'mem', name: 'wiki', target: { group: 'wiki' } }, 201);
  ids.engEnt = eng.id;
  ids.wikiEnt = wiki.id;
  await api('POST', '/api/rules', { name: 'eng', group: 'Eng', entitlements: ['mem/eng'] }, 201);
  const manual = await api('POST', '/api/grants', { userId: ids.alice, entitlement: 'mem/wiki' }, 201);
  ids.manual = manual.id;

  // What alice's userSync workflow would do, run directly.
  const plan = await planUserSync(database.db, runtime, ids.alice!, undefined, 'userSync:alice');
  t.same(plan.connectors[0]?.steps.map((s) => s.action), ['createAccount', 'grantEntitlement', 'grantEntitlement']);
  for (const s of plan.connectors[0]!.steps) await applyStep(database.db, runtime, s.action, { userId: ids.alice!, connectorId: 'mem', entitlementId: s.entitlementId, workflowId: 'userSync:alice' });
  t.ok(target.groups.get('eng')?.has(`acct-${ids.alice}`), 'alice is in eng in the target');

  const ruleGrant = last(await events(`action=grant.created&actor=rule:eng`));
  t.match(ruleGrant, { resourceType: 'Grant', after: { userId: ids.alice, entitlementId: ids.engEnt, reason: 'rule:eng', status: 'active' } }, 'the rule is the actor of its grant');
  checkpoints.provisioned = last(await events(`userId=${ids.alice}`)).at;

  const history = await events(`userId=${ids.alice}`);
  const actions = history.map((e) => e.action);
  for (const action of ['user.created', 'group.patched', 'grant.created', 'account.createAccount', 'account.grantEntitlement']) {
    t.ok(actions.includes(action), `alice's history has ${action}`);
  }
  t.ok(
    history.filter((e) => e.resourceType === 'Account').every((e) => e.resourceId === `mem:${ids.alice}`),
    "alice's account events are in her history",
  );
  t.notOk(
    history.some((e) => e.resourceType === 'Group' && e.action === 'group.patched' && JSON.stringify(e.after).includes(ids.bob!) && !JSON.stringify(e.after).includes(ids.alice!)),
    "group events about bob alone are not in alice's history",
  );
  const bobs = await events(`userId=${ids.bob}`);
  t.ok(
    bobs.some((e) => e.action === 'group.patched' && (e.after!.membersRemoved as unknown[]).length === 1),
    "bob's removal from Eng is in bob's history",
  );
  t.ok(bobs.some((e) => e.action === 'group.replaced'), "and so is his return by PUT; alice, kept by it, does not find it in hers");
  t.notOk(actions.includes('group.replaced'), 'a replace that kept alice is not about her');

  await api('DELETE', `/api/grants/${ids.manual}`, undefined, 204);
  const ended = last(await events(`action=grant.ended&resourceId=${ids.manual}`));
  t.match(ended.after, { userId: ids.alice, entitlementId: ids.wikiEnt, reason: 'manual', status: 'ended' }, 'an ended grant names its user and entitlement');
  t.ok((await events(`userId=${ids.alice}`)).some((e) => e.id === ended.id), "and is in the user's history");
  checkpoints.manualEnded = ended.at;
});

t.test('deactivation: the workflow ends grants, accounts are disabled, all of it audited', async (t) => {
  await api('PATCH', `/scim/v2/Users/${ids.alice}`, { schemas: [PATCH], Operations: [{ op: 'replace', path: 'active', value: false }] });
  const plan = await planUserSync(database.db, runtime, ids.alice!, undefined, 'userSync:alice');
  t.ok(plan.deprovision);
  for (const s of plan.connectors[0]!.steps) await applyStep(database.db, runtime, s.action, { userId: ids.alice!, connectorId: 'mem', entitlementId: s.entitlementId, workflowId: 'userSync:alice' });
  const ended = (await events(`userId=${ids.alice}&action=grant.ended`)).filter((e) => e.actor === 'userSync:alice');
  t.same(ended.map((e) => e.after!.reason), ['rule:eng'], "deprovisioning ends the rule grant, by the user's workflow");
  t.equal(ended[0]!.reason, 'user deprovisioned');
  checkpoints.deactivated = last(await events(`userId=${ids.alice}`)).at;
  await api('DELETE', `/scim/v2/Users/${ids.alice}`, undefined, 204);
  const deleted = last(await events(`userId=${ids.alice}`));
  t.equal(deleted.action, 'user.deleted');
  t.same(deleted.before!.memberOf, [{ value: ids.eng, display: 'Eng' }], 'user.deleted lists the memberships it removed');
});

t.test("a user's access at past instants, after deactivation and deletion", async (t) => {
  const access = async (at?: string) => await api('GET', `/api/users/${ids.alice}/access${at ? `?at=${encodeURIComponent(at)}` : ''}`);

  const provisioned = await access(checkpoints.provisioned);
  t.match(provisioned.user, { userName: 'alice@example.com', active: true, deleted: false });
  t.same(provisioned.groups, [{ id: ids.eng, displayName: 'Eng' }], 'in Eng');
  t.same(
    provisioned.grants.map((g: { entitlement: string; reason: string }) => `${g.entitlement}:${g.reason}`).sort(),
    ['eng:rule:eng', 'wiki:manual'],
    'the rule grant and the manual grant',
  );
  t.match(provisioned.accounts, [{ connectorId: 'mem', state: 'active', remoteId: `acct-${ids.alice}` }]);
  t.same(
    provisioned.accounts[0].entitlements.map((e: { entitlement: string }) => e.entitlement).sort(),
    ['eng', 'wiki'],
    'both entitlements applied',
  );

  const afterManualEnded = await access(checkpoints.manualEnded);
  t.same(afterManualEnded.grants.map((g: { entitlement: string }) => g.entitlement), ['eng'], 'the manual grant ended');

  const deactivated = await access(checkpoints.deactivated);
  t.match(deactivated.user, { active: false, deleted: false });
  t.same(deactivated.grants, [], 'no grant after deprovisioning');
  t.match(deactivated.accounts, [{ connectorId: 'mem', state: 'disabled', entitlements: [] }], 'account disabled, nothing applied');

  const now = await access();
  t.match(now.user, { deleted: true });
  t.same(now.groups, [], 'no membership after deletion');

  const before = await access('2000-01-01');
  t.equal(before.user, null, 'before the user existed: nothing');
  t.same([before.groups, before.grants, before.accounts], [[], [], []]);

  const bad = await gw.scim({ method: 'GET', url: `/api/users/${ids.alice}/access?at=yesterday` });
  t.equal(bad.statusCode, 400, bad.body);
  const missing = await gw.scim({ method: 'GET', url: '/api/users/00000000-0000-4000-8000-000000000000/access' });
  t.equal(missing.statusCode, 404, missing.body);
});

t.test('the chain still verifies', async (t) => {
  const result = await verifyAuditChain(database.db);
  t.ok(result.ok, JSON.stringify(result));
});
