/**
 * Reconciliation on the real Temporal dev server and PostgreSQL: drift introduced directly in a
 * target is found page by page, reported in a dry run and in monitor mode, and in enforce mode fixed
 * through the users' workflows (authoritative memberships) or left alone (additive ones).
 */
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { userBody } from '../helpers/gateway.js';
import { eventually } from '../helpers/temporal.js';
import { startTestStack } from '../helpers/stack.js';
import { memoryTarget } from '../fixtures/memory-connector.js';
import { connectorSearchAttribute } from '../../workflows/client.js';

const PLUGIN = fileURLToPath(new URL('../fixtures/memory-connector.ts', import.meta.url));
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';

const { temporal, gw } = await startTestStack(t, { idleMs: 500 });
const ns = `rec-${temporal.taskQueue}`;
const enforced = memoryTarget(ns);
const watched = memoryTarget(`${ns}-watch`);

const api = gw.call;
type Summary = { drift: Array<{ kind: string; action: string; count: number }>; apiCalls: number; accountsSeen: number };
const count = (s: Summary, kind: string, action: string) => s.drift.find((d) => d.kind === kind && d.action === action)?.count ?? 0;

const ids: Record<string, string> = {};

t.test('setup: two connectors, entitlements of both membership kinds, users provisioned', async (t) => {
  await api('PUT', '/api/connectors/enforced', { id: 'enforced', type: PLUGIN, config: { namespace: ns }, reconcileEveryMinutes: 60 });
  await api('PUT', '/api/connectors/watched', { id: 'watched', type: PLUGIN, config: { namespace: `${ns}-watch` }, mode: 'monitor' });
  await api('POST', '/api/entitlements', { connectorId: 'enforced', name: 'eng', target: { group: 'eng' }, membership: 'authoritative' }, 201);
  await api('POST', '/api/entitlements', { connectorId: 'enforced', name: 'ops', target: { group: 'ops' }, membership: 'authoritative' }, 201);
  await api('POST', '/api/entitlements', { connectorId: 'enforced', name: 'wiki', target: { group: 'wiki' }, membership: 'additive' }, 201);
  await api('POST', '/api/entitlements', { connectorId: 'watched', name: 'team', target: { group: 'team' }, membership: 'authoritative' }, 201);

  for (const name of ['alice', 'bob', 'carol']) ids[name] = (await api('POST', '/scim/v2/Users', userBody(`${name}@example.com`), 201)).id;
  await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Eng', members: [{ value: ids.alice }, { value: ids.bob }, { value: ids.carol }] }, 201);
  await api('POST', '/api/rules', { name: 'eng', group: 'Eng', entitlements: ['enforced/eng'] }, 201);
  await eventually(async () => ['alice', 'bob', 'carol'].every((n) => enforced.groups.get('eng')?.has(`acct-${ids[n]}`)), 60_000, 'everyone in eng');
  t.equal(enforced.accounts.size, 3);

  const schedule = await eventually(() => temporal.client.schedule.getHandle('reconcile:enforced').describe(), 30_000, 'the reconcile schedule');
  t.same(schedule.spec.intervals?.map((i) => i.every), [3_600_000], 'a Temporal Schedule reconciles the connector hourly');
});

t.test('drift introduced in the target: a dry run reports it and changes nothing', async (t) => {
  const acct = (n: string) => `acct-${ids[n]}`;
  enforced.groups.get('eng')!.delete(acct('alice')); // missing membership
  enforced.groups.get('eng')!.add('acct-stranger'); // unexpected, no user of ours
  enforced.groups.set('ops', new Set([acct('carol')])); // unexpected for a known user, authoritative
  enforced.groups.set('wiki', new Set([acct('carol')])); // unexpected, additive
  enforced.accounts.set('acct-orphan', { userName: 'orphan@example.com', active: true }); // orphan account
  enforced.accounts.delete(acct('bob')); // missing account
  enforced.groups.get('eng')!.delete(acct('bob'));

  const before = JSON.stringify([...enforced.groups.entries()].map(([k, v]) => [k, [...v].sort()]));
  const dry: Summary = await api('POST', '/api/connectors/enforced/reconcile', { dryRun: true });
  t.equal(count(dry, 'missingMembership', 'reported'), 2, 'alice and bob (whose account went) are missing from eng');
  t.equal(count(dry, 'missingAccount', 'reported'), 1, "bob's account is gone");
  t.equal(count(dry, 'unexpectedMembership', 'reported'), 3, 'stranger in eng, carol in ops and wiki');
  t.equal(count(dry, 'orphanAccount', 'reported'), 1);
  t.ok(dry.apiCalls >= 5, `the target was read page by page (${dry.apiCalls} calls)`);
  t.equal(JSON.stringify([...enforced.groups.entries()].map(([k, v]) => [k, [...v].sort()])), before, 'a dry run changes nothing');
});

t.test('enforce mode fixes authoritative drift through the users, leaves additive memberships alone', async (t) => {
  const acct = (n: string) => `acct-${ids[n]}`;
  const run: Summary = await api('POST', '/api/connectors/enforced/reconcile', { wait: true });
  t.equal(count(run, 'missingMembership', 'fixed'), 2);
  t.equal(count(run, 'missingAccount', 'fixed'), 1);
  t.equal(count(run, 'unexpectedMembership', 'fixed'), 2, 'stranger (removed directly) and carol in ops (through her workflow)');
  t.equal(count(run, 'unexpectedMembership', 'ignored'), 1, 'carol in wiki: additive');
  t.equal(count(run, 'orphanAccount', 'reported'), 1, 'orphans are for a human to decide');

  await eventually(
    async () =>
      enforced.groups.get('eng')?.has(acct('alice')) &&
      enforced.groups.get('eng')?.has(acct('bob')) &&
      enforced.accounts.get(acct('bob'))?.active === true &&
      !enforced.groups.get('eng')?.has('acct-stranger') &&
      !enforced.groups.get('ops')?.has(acct('carol')),
    60_000,
    'the target to converge',
  );
  t.ok(enforced.groups.get('wiki')?.has(acct('carol')), 'additive membership untouched');
  t.ok(enforced.accounts.has('acct-orphan'), 'orphan account untouched');

  const again: Summary = await eventually(async () => {
    const s: Summary = await api('POST', '/api/connectors/enforced/reconcile', { wait: true });
    return s.drift.every((d) => d.action !== 'fixed') ? s : undefined;
  }, 60_000, 'a clean reconcile');
  t.same(
    again.drift.map((d) => `${d.kind}:${d.action}`).sort(),
    ['orphanAccount:reported', 'unexpectedMembership:ignored'],
    'nothing left to fix: only what is deliberately left alone',
  );
  const drift = await api('GET', '/api/connectors/enforced/drift');
  t.equal(drift.run.driftFound, 2);
});

t.test("enforce mode's changes to recorded state are audit events by the run, in each user's history", async (t) => {
  const { rows } = await gw.app.db.query<{ id: string }>(
    `SELECT id FROM reconcile_runs WHERE connector_id = 'enforced' AND NOT dry_run ORDER BY started_at LIMIT 1`,
  );
  const actor = `reconcile:${rows[0]!.id}`;
  type Event = { action: string; resourceType: string; resourceId: string; before: Record<string, unknown> | null; after: Record<string, unknown> | null };
  const byRun: Event[] = (await api('GET', `/api/audit?limit=1000&actor=${encodeURIComponent(actor)}`)).events;
  const has = (action: string, resourceId: string, after: Record<string, unknown>) =>
    byRun.some((e) => e.action === action && e.resourceId === resourceId && Object.entries(after).every(([k, v]) => e.after?.[k] === v));
  const eng = (await api('GET', '/api/entitlements')).find((e: { name: string }) => e.name === 'eng').id;
  const ops = (await api('GET', '/api/entitlements')).find((e: { name: string }) => e.name === 'ops').id;
  t.ok(has('account.markedDeleted', `enforced:${ids.bob}`, { state: 'deleted' }), "bob's vanished account is recorded deleted by the run");
  t.ok(has('account.membershipLost', `enforced:${ids.alice}`, { entitlementId: eng, applied: false }), "alice's missing eng membership");
  t.ok(has('account.membershipLost', `enforced:${ids.bob}`, { entitlementId: eng, applied: false }), "bob's eng membership went with his account");
  t.ok(has('account.membershipFound', `enforced:${ids.carol}`, { entitlementId: ops, applied: true }), "carol's unexpected ops membership");
  t.ok(
    byRun.some((e) => e.action === 'account.revokeEntitlement' && e.resourceType === 'RemoteAccount' && e.resourceId === 'enforced:acct-stranger'),
    'the stranger removed directly from an authoritative entitlement',
  );

  const bobs: Event[] = (await api('GET', `/api/audit?limit=1000&userId=${ids.bob}`)).events;
  t.ok(bobs.some((e) => e.action === 'account.markedDeleted'), "the run's change is in bob's history");
  t.ok(
    bobs.some((e) => e.action === 'account.createAccount' && e.resourceId === `enforced:${ids.bob}`),
    "and so is the account his workflow created again, with the grant events of rule eng",
  );
  t.ok(bobs.some((e) => e.action === 'grant.created' && e.resourceType === 'Grant'), 'the rule grant is in his history');
  const access = await api('GET', `/api/users/${ids.bob}/access`);
  t.match(access.accounts, [{ connectorId: 'enforced', state: 'active', entitlements: [{ entitlement: 'eng' }] }], "bob's access now, from the log");

  const verify = await api('GET', '/api/audit/verify');
  t.ok(verify.ok, `the audit chain verifies: ${JSON.stringify(verify)}`);
});

t.test('monitor mode only reports', async (t) => {
  watched.groups.set('team', new Set(['acct-somebody']));
  const run: Summary = await api('POST', '/api/connectors/watched/reconcile', { wait: true });
  t.equal(count(run, 'unexpectedMembership', 'reported'), 1);
  t.ok(watched.groups.get('team')?.has('acct-somebody'), 'nothing removed in monitor mode');
  const desc = await temporal.client.workflow.getHandle('reconcile:watched').describe();
  t.equal(desc.typedSearchAttributes.get(connectorSearchAttribute), 'watched', 'searchable by connector in the Temporal UI');
});
