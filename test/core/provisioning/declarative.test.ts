/**
 * Declarative provisioning configuration against a real PostgreSQL: a file creates connectors,
 * entitlements and rules with the admin API's audit events and outbox messages; applying it again
 * writes nothing; a change touches only what changed; an invalid file names every problem and
 * leaves the database as it was.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { applyProvisioningFile, ProvisioningFileError } from '../../../core/provisioning/declarative.js';
import { createTestDatabase } from '../../helpers/db.js';

const PLUGIN = fileURLToPath(new URL('../../fixtures/memory-connector.ts', import.meta.url));
const DEPARTMENT = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department';

const database = await createTestDatabase(t);
const db = database.db;
const dir = await mkdtemp(join(tmpdir(), 'provisioning-file-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));

// Directory content as the identity provider would have pushed it: alice directly in Engineering,
// carol through the nested group Platform, bob in no group.
const ids = { alice: randomUUID(), bob: randomUUID(), carol: randomUUID(), engineering: randomUUID(), platform: randomUUID() };
for (const name of ['alice', 'bob', 'carol'] as const) {
  await db.query('INSERT INTO users (id, user_name, resource) VALUES ($1, $2, $3)', [ids[name], `${name}@example.com`, { userName: `${name}@example.com` }]);
}
for (const [id, displayName] of [[ids.engineering, 'Engineering'], [ids.platform, 'Platform']] as const) {
  await db.query('INSERT INTO groups (id, display_name, resource) VALUES ($1, $2, $3)', [id, displayName, { displayName }]);
}
await db.query(
  `INSERT INTO group_members (group_id, member_id, member_type) VALUES ($1, $2, 'User'), ($1, $3, 'Group'), ($3, $4, 'User')`,
  [ids.engineering, ids.alice, ids.platform, ids.carol],
);

/** Writes a file into the temporary folder and returns its path. */
async function file(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

/** The provisioning file of the first tests; the second connector names the plugin by a path relative to the file. */
const baseYaml = (membership = 'additive') => `
connectors:
  - id: memory
    type: ${PLUGIN}
    config: { namespace: decl-main, secret: env:MEMORY_SECRET }
    reconcileEveryMinutes: 60
  - id: backup
    type: ./${relative(dir, PLUGIN)}
    config:
      namespace: decl-backup
    mode: monitor
    deprovision: delete
    enabled: false
    reconcileEveryMinutes: 30
entitlements:
  - connector: memory
    name: eng-group
    target: { group: eng }
    membership: ${membership}
  - connector: backup
    name: eng-group
    target: { group: eng }
    membership: authoritative
rules:
  - name: engineering
    group: engineering   # displayName, case-insensitively
    entitlements: [memory/eng-group, backup/eng-group]
`;

/** Every row the apply may write, to prove a failed apply wrote nothing. */
async function snapshot() {
  const q = async (sql: string) => (await db.query(sql)).rows;
  return {
    connectors: await q('SELECT * FROM connectors ORDER BY id'),
    entitlements: await q('SELECT * FROM entitlements ORDER BY id'),
    rules: await q('SELECT * FROM rules ORDER BY id'),
    accessPolicies: await q('SELECT * FROM access_policies ORDER BY id'),
    audit: await q('SELECT id FROM audit_events ORDER BY id'),
    outbox: await q('SELECT id FROM outbox ORDER BY id'),
  };
}

const counts = (created: number, updated: number, unchanged: number) => ({ created, updated, unchanged });

t.test('a first apply creates everything, with audit events and outbox messages', async (t) => {
  const path = await file('provisioning.yaml', baseYaml());
  const report = await applyProvisioningFile(db, path, {});
  t.same(report, { connectors: counts(2, 0, 0), entitlements: counts(2, 0, 0), rules: counts(1, 0, 0), accessPolicies: counts(0, 0, 0) });

  const { rows: connectors } = await db.query('SELECT id, type, config, mode, deprovision, enabled, reconcile_every_minutes FROM connectors ORDER BY id');
  t.same(connectors, [
    { id: 'backup', type: PLUGIN, config: { namespace: 'decl-backup' }, mode: 'monitor', deprovision: 'delete', enabled: false, reconcile_every_minutes: 30 },
    { id: 'memory', type: PLUGIN, config: { namespace: 'decl-main', secret: 'env:MEMORY_SECRET' }, mode: 'enforce', deprovision: 'disable', enabled: true, reconcile_every_minutes: 60 },
  ], 'defaults applied; a relative plugin path is stored resolved against the file');

  const { rows: entitlements } = await db.query<{ id: string; connector_id: string; target: unknown; membership: string }>(
    'SELECT id, connector_id, target, membership FROM entitlements ORDER BY connector_id',
  );
  t.same(entitlements.map(({ id: _, ...e }) => e), [
    { connector_id: 'backup', target: { group: 'eng' }, membership: 'authoritative' },
    { connector_id: 'memory', target: { group: 'eng' }, membership: 'additive' },
  ]);
  const { rows: rules } = await db.query<{ group_id: string; condition: string | null; entitlement_ids: string[] }>('SELECT group_id, condition, entitlement_ids FROM rules');
  t.equal(rules.length, 1);
  t.equal(rules[0]!.group_id, ids.engineering, 'the group was resolved by displayName');
  t.same([...rules[0]!.entitlement_ids].sort(), entitlements.map((e) => e.id).sort());

  const { rows: audit } = await db.query('SELECT actor, action, resource_type, reason, before FROM audit_events ORDER BY id');
  t.same(audit.map((a) => `${a.actor} ${a.action} ${a.resource_type} ${a.reason}`), [
    'provisioning-file connector.saved Connector declarative configuration',
    'provisioning-file connector.saved Connector declarative configuration',
    'provisioning-file entitlement.created Entitlement declarative configuration',
    'provisioning-file entitlement.created Entitlement declarative configuration',
    'provisioning-file rule.created Rule declarative configuration',
  ]);
  t.ok(audit.every((a) => a.before === null), 'created things have no "before"');

  const { rows: outbox } = await db.query('SELECT topic, aggregate_id, payload FROM outbox ORDER BY id');
  t.same(outbox.filter((m) => m.topic === 'connector.changed').sort((a, b) => a.aggregate_id.localeCompare(b.aggregate_id)), [
    { topic: 'connector.changed', aggregate_id: 'backup', payload: { reconcileEveryMinutes: null } },
    { topic: 'connector.changed', aggregate_id: 'memory', payload: { reconcileEveryMinutes: 60 } },
  ], 'one connector.changed per connector; a disabled connector gets no schedule');
  t.same(
    outbox.filter((m) => m.topic === 'user.changed').map((m) => m.aggregate_id).sort(),
    [ids.alice, ids.carol].sort(),
    'the members of the rule\'s group, nested ones included, are re-evaluated; bob is not',
  );
});

t.test('applying the same file again changes nothing', async (t) => {
  const before = await snapshot();
  const report = await applyProvisioningFile(db, join(dir, 'provisioning.yaml'), {});
  t.same(report, { connectors: counts(0, 0, 2), entitlements: counts(0, 0, 2), rules: counts(0, 0, 1), accessPolicies: counts(0, 0, 0) });
  t.same(await snapshot(), before, 'no row written, no updated_at bumped, no audit event, no outbox message');
});

t.test("changing one entitlement's membership updates only it", async (t) => {
  const before = await snapshot();
  const path = await file('provisioning.yaml', baseYaml('authoritative'));
  const report = await applyProvisioningFile(db, path, { actor: 'gitops' });
  t.same(report, { connectors: counts(0, 0, 2), entitlements: counts(0, 1, 1), rules: counts(0, 0, 1), accessPolicies: counts(0, 0, 0) });
  const after = await snapshot();
  t.same(after.connectors, before.connectors);
  t.same(after.rules, before.rules);
  t.same(after.outbox, before.outbox, 'an entitlement change sends no outbox message');
  const { rows } = await db.query("SELECT connector_id, membership FROM entitlements WHERE name = 'eng-group' ORDER BY connector_id");
  t.same(rows, [{ connector_id: 'backup', membership: 'authoritative' }, { connector_id: 'memory', membership: 'authoritative' }]);
  const { rows: audit } = await db.query('SELECT actor, action, before, after FROM audit_events WHERE id > $1 ORDER BY id', [before.audit.at(-1)!.id]);
  t.equal(audit.length, 1);
  t.match(audit[0], { actor: 'gitops', action: 'entitlement.updated', before: { connectorId: 'memory', membership: 'additive' }, after: { connectorId: 'memory', membership: 'authoritative' } });
});

t.test('what the file does not mention is left alone', async (t) => {
  const before = await snapshot();
  const path = await file('partial.yaml', `connectors:\n  - id: memory\n    type: ${PLUGIN}\n    config: { namespace: decl-main, secret: env:MEMORY_SECRET }\n    reconcileEveryMinutes: 60\n`);
  t.same(await applyProvisioningFile(db, path, {}), { connectors: counts(0, 0, 1), entitlements: counts(0, 0, 0), rules: counts(0, 0, 0), accessPolicies: counts(0, 0, 0) });
  t.same(await snapshot(), before);
});

t.test('an invalid file names each problem and its location, and writes nothing', async (t) => {
  // Each file also declares a valid new connector, which must not be created either.
  const extra = `  - id: extra\n    type: ${PLUGIN}\n    config: { namespace: extra }\n`;
  const cases: Array<[string, string, RegExp]> = [
    [
      'a plaintext secret',
      `connectors:\n${extra}  - id: leaky\n    type: ${PLUGIN}\n    config: { namespace: x, apiToken: ghp_plaintext }\n`,
      /connectors\[1\]\.config\.apiToken: give secrets as env:NAME or file:\/path references/,
    ],
    ['an unknown connector type', `connectors:\n${extra}  - id: nope\n    type: ./no-such-plugin.js\n`, /connectors\[1\]\.type: connector type ".*no-such-plugin\.js" cannot be loaded/],
    ['an invalid configuration', `connectors:\n${extra}  - id: bad\n    type: ${PLUGIN}\n    config: { namespace: 42 }\n`, /connectors\[1\]\.config: invalid configuration for connector "memory": \/namespace/],
    [
      'an invalid entitlement target',
      `connectors:\n${extra}entitlements:\n  - connector: memory\n    name: eng-group\n    target: { group: eng }\n  - connector: extra\n    name: x\n    target: { nope: 1 }\n`,
      /entitlements\[1\]\.target: not valid for a memory entitlement: \/group/,
    ],
    ['a bad rule condition', `connectors:\n${extra}rules:\n  - name: broken\n    condition: 'department eq'\n    entitlements: [memory/eng-group]\n`, /rules\[0\]\.condition: /],
    ['a missing group', `connectors:\n${extra}rules:\n  - name: sales\n    group: Sales\n    entitlements: [memory/eng-group]\n`, /rules\[0\]\.group: no group "Sales"; groups come from the identity provider/],
    [
      'a missing entitlement',
      `connectors:\n${extra}rules:\n  - name: engineering\n    group: Engineering\n    entitlements: [memory/eng-group, memory/nope]\n`,
      /rules\[0\]\.entitlements\[1\]: no entitlement "memory\/nope"/,
    ],
    ['an entitlement of an unknown connector', `connectors:\n${extra}entitlements:\n  - connector: ghost\n    name: x\n    target: { group: x }\n`, /entitlements\[0\]\.connector: no connector "ghost"/],
    ['a misspelt field', `connectors:\n${extra}  - id: memory\n    type: ${PLUGIN}\n    config: { namespace: decl-main }\n    mdoe: monitor\n`, /connectors\[1\]\.mdoe: unknown field/],
    ['broken YAML', `connectors:\n  - id: [oops\n`, /is not valid YAML/],
  ];
  for (const [what, text, message] of cases) {
    const before = await snapshot();
    const path = await file('invalid.yaml', text);
    const err = await applyProvisioningFile(db, path, {}).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.type(err, ProvisioningFileError, what);
    t.match((err as Error).message, message, what);
    t.match((err as Error).message, path, `${what}: the message names the file`);
    t.same(await snapshot(), before, `${what}: nothing written`);
  }
});

t.test('every problem is reported at once', async (t) => {
  const path = await file('many.yaml', `
connectors:
  - id: Bad_Id
    type: ${PLUGIN}
    config: { namespace: x, password: hunter2 }
    mode: sometimes
rules:
  - name: both
    group: Engineering
    condition: 'userName eq "x"'
    entitlements: []
  - name: both
    group: Nobody
    entitlements: [memory/eng-group]
`);
  const err = (await applyProvisioningFile(db, path, {}).catch((e: unknown) => e)) as ProvisioningFileError;
  t.type(err, ProvisioningFileError);
  t.match(err.problems, [
    /^connectors\[0\]\.config\.password: give secrets/,
    /^connectors\[0\]\.id: "Bad_Id" must match/,
    /^connectors\[0\]\.mode: must be one of enforce, monitor/,
    /^rules\[0\]: give exactly one of "group" and "condition"/,
    /^rules\[0\]\.entitlements: must be a non-empty list/,
    /^rules\[1\]\.group: no group "Nobody"/,
    /^rules\[1\]\.name: "both" is already declared at rules\[0\]/,
  ], 'in the order of the file');
  t.equal(err.problems.length, 7);
  t.match(err.message, /7 problems:\n {2}- connectors\[0\]\.config\.password/);
});

t.test('a JSON file works the same; a new condition rule re-evaluates every user', async (t) => {
  const before = await snapshot();
  const doc = {
    entitlements: [{ connector: 'memory', name: 'security-group', target: { group: 'security' } }],
    rules: [{ name: 'security-dept', condition: `${DEPARTMENT} eq "Security"`, entitlements: ['memory/security-group'] }],
  };
  const path = await file('provisioning.json', JSON.stringify(doc));
  t.same(await applyProvisioningFile(db, path, {}), { connectors: counts(0, 0, 0), entitlements: counts(1, 0, 0), rules: counts(1, 0, 0), accessPolicies: counts(0, 0, 0) });
  const { rows } = await db.query<{ aggregate_id: string }>("SELECT aggregate_id FROM outbox WHERE topic = 'user.changed' AND id > $1", [before.outbox.at(-1)!.id]);
  t.same(rows.map((r) => r.aggregate_id).sort(), [ids.alice, ids.bob, ids.carol].sort());
  const { rows: rule } = await db.query("SELECT condition FROM rules WHERE name = 'security-dept'");
  t.same(rule, [{ condition: `${DEPARTMENT} eq "Security"` }]);

  const again = await snapshot();
  t.same(await applyProvisioningFile(db, path, {}), { connectors: counts(0, 0, 0), entitlements: counts(0, 0, 1), rules: counts(0, 0, 1), accessPolicies: counts(0, 0, 0) });
  t.same(await snapshot(), again, 'the second apply of the JSON file writes nothing');
});

t.test("moving a rule to another group re-evaluates the members of both groups", async (t) => {
  const before = await snapshot();
  const path = await file('move.yml', `rules:\n  - name: engineering\n    group: ${ids.platform}\n    entitlements: [backup/eng-group, memory/eng-group]\n`);
  t.same(await applyProvisioningFile(db, path, {}), { connectors: counts(0, 0, 0), entitlements: counts(0, 0, 0), rules: counts(0, 1, 0), accessPolicies: counts(0, 0, 0) });
  const { rows } = await db.query<{ aggregate_id: string }>("SELECT aggregate_id FROM outbox WHERE topic = 'user.changed' AND id > $1", [before.outbox.at(-1)!.id]);
  t.same(rows.map((r) => r.aggregate_id).sort(), [ids.alice, ids.carol].sort(), 'alice loses the rule, carol keeps it');
  const { rows: audit } = await db.query("SELECT action, before, after FROM audit_events WHERE resource_type = 'Rule' ORDER BY id DESC LIMIT 1");
  t.match(audit[0], { action: 'rule.updated', before: { groupId: ids.engineering }, after: { groupId: ids.platform } });
  t.equal((await db.query('SELECT 1 FROM rules WHERE group_id = $1', [ids.platform])).rowCount, 1, 'the group was resolved by id');
});

t.test('a file with an unknown extension or that cannot be read', async (t) => {
  await t.rejects(applyProvisioningFile(db, await file('provisioning.txt', ''), {}), /must end in \.yaml, \.yml or \.json/);
  await t.rejects(applyProvisioningFile(db, join(dir, 'missing.yaml'), {}), /cannot be read: ENOENT/);
  await t.rejects(applyProvisioningFile(db, await file('empty.yaml', ''), {}), /the document must be an object/);
});

const policiesYaml = (displayName = 'Engineering tools', extra = '') => `
entitlements:
  - connector: memory
    name: eng-tools          # created by this file, requestable by the policy below
    target: { group: eng-tools }
accessPolicies:
  - name: eng-tools
    entitlement: memory/eng-tools
    displayName: ${displayName}
    aliases: [tools]
    owners: { users: [alice@example.com], group: Platform }
    eligibility: { group: Engineering }
    durations: { defaultSeconds: 3600, maxSeconds: 7200, expiringNoticeSeconds: 600 }
    fulfilment: { mode: automatic }
    stages:
      - name: owners
        approvers: { owners: true }
        timeoutSeconds: 86400
        remindBeforeSeconds: [3600, 43200]
${extra}  - name: laptop-admin
    displayName: Laptop admin rights
    fulfilment: { mode: manual, group: engineering, instructions: Add to local admins via the MDM }
    stages: [{ approvers: { users: [BOB@example.com] } }]
`;

t.test('access policies in the file: applied like PUT /api/access-policies/{name}, authoritative for those it declares', async (t) => {
  const path = await file('policies.yaml', policiesYaml());
  t.same(await applyProvisioningFile(db, path, {}), { connectors: counts(0, 0, 0), entitlements: counts(1, 0, 0), rules: counts(0, 0, 0), accessPolicies: counts(2, 0, 0) });
  const { rows } = await db.query('SELECT * FROM access_policies ORDER BY name');
  const [tools, laptop] = [rows.find((r) => r.name === 'eng-tools')!, rows.find((r) => r.name === 'laptop-admin')!];
  const { rows: ent } = await db.query<{ id: string }>("SELECT id FROM entitlements WHERE connector_id = 'memory' AND name = 'eng-tools'");
  t.equal(tools.entitlement_id, ent[0]!.id, 'the entitlement the same file creates is found');
  t.same(tools.owner_user_ids, [ids.alice], 'users are resolved by userName');
  t.equal(tools.owner_group_id, ids.platform, 'groups by displayName');
  t.equal(tools.eligibility_group_id, ids.engineering);
  t.equal(tools.expiring_notice_s, 600);
  t.match(tools.stages, [{ name: 'owners', approvers: { owners: true }, timeoutSeconds: 86400, remindBeforeSeconds: [43200, 3600] }], 'stages as the API stores them');
  t.equal(laptop.fulfilment_group_id, ids.engineering, 'case-insensitively, as the API does');
  t.same(laptop.stages[0].approvers.userIds, [ids.bob]);
  const { rows: audit } = await db.query("SELECT actor, reason, before, after FROM audit_events WHERE action = 'access-policy.saved' ORDER BY id");
  t.same(audit.map((a) => `${a.actor} ${a.reason} ${a.before === null}`), ['provisioning-file declarative configuration true', 'provisioning-file declarative configuration true']);

  const before = await snapshot();
  t.same(await applyProvisioningFile(db, path, {}), { connectors: counts(0, 0, 0), entitlements: counts(0, 0, 1), rules: counts(0, 0, 0), accessPolicies: counts(0, 0, 2) });
  t.same(await snapshot(), before, 'an unchanged file writes nothing');

  // Someone edits a declared policy through the API; the file wins at the next apply.
  await db.query("UPDATE access_policies SET display_name = 'Edited by hand', aliases = '{}' WHERE name = 'eng-tools'");
  t.same(await applyProvisioningFile(db, path, { actor: 'gitops' }), { connectors: counts(0, 0, 0), entitlements: counts(0, 0, 1), rules: counts(0, 0, 0), accessPolicies: counts(0, 1, 1) });
  const { rows: restored } = await db.query("SELECT id, display_name, aliases FROM access_policies WHERE name = 'eng-tools'");
  t.same(restored, [{ id: tools.id, display_name: 'Engineering tools', aliases: ['tools'] }], 'the file is authoritative for the policies it declares; the id is kept');
  const { rows: updated } = await db.query("SELECT actor, before, after FROM audit_events WHERE action = 'access-policy.saved' ORDER BY id DESC LIMIT 1");
  t.match(updated[0], { actor: 'gitops', before: { displayName: 'Edited by hand' }, after: { displayName: 'Engineering tools' } }, 'the replacement is audited with the state before');

  // A field left out of the file takes its default, as with PUT.
  const trimmed = await file('policies-trimmed.yaml', policiesYaml().replace('    aliases: [tools]\n', ''));
  t.same((await applyProvisioningFile(db, trimmed, {})).accessPolicies, counts(0, 1, 1));
  t.same((await db.query("SELECT aliases FROM access_policies WHERE name = 'eng-tools'")).rows[0].aliases, []);
});

t.test('an invalid access policy names the policy and the field, and nothing is written', async (t) => {
  const cases: Array<[string, string, RegExp]> = [
    ['a missing group', policiesYaml('x', '  - name: broken\n    displayName: Broken\n    fulfilment: { mode: manual, group: Nobody }\n    stages: []\n'), /accessPolicies\.broken\.fulfilment\.group: no group Nobody/],
    ['an unknown user', policiesYaml('x', '  - name: broken\n    displayName: Broken\n    fulfilment: { mode: manual, group: Engineering }\n    stages: [{ approvers: { users: [zed@example.com] } }]\n'), /accessPolicies\.broken\.stages\[0\]\.approvers\.users: no user zed@example\.com/],
    ['a misspelt field', policiesYaml('x', '  - name: broken\n    displayName: Broken\n    fulfilment: { mode: manual, group: Engineering }\n    stages: [{ approver: { users: [bob@example.com] } }]\n'), /accessPolicies\.broken\.stages\[0\]\.approver: unknown field/],
    ['a wrong rule', policiesYaml('x', '  - name: broken\n    displayName: Broken\n    fulfilment: { mode: manual, group: Engineering }\n    stages: [{ approvers: { group: Engineering }, rule: most }]\n'), /accessPolicies\.broken\.stages\[0\]\.rule: must be equal to one of the allowed values \(any, all, quorum\)/],
    ['a missing displayName', policiesYaml('x', '  - name: broken\n    fulfilment: { mode: manual, group: Engineering }\n    stages: []\n'), /accessPolicies\.broken\.displayName: is required/],
    ['a bad name', policiesYaml('x', '  - name: Broken Policy\n    displayName: Broken\n    fulfilment: { mode: manual, group: Engineering }\n    stages: []\n'), /accessPolicies\[1\]\.name: "Broken Policy" must match/],
    ['a reminder without a timeout', policiesYaml('x', '  - name: broken\n    displayName: Broken\n    fulfilment: { mode: manual, group: Engineering }\n    stages: [{ approvers: { group: Engineering }, remindBeforeSeconds: [60] }]\n'), /accessPolicies\.broken\.stages\[0\]\.remindBeforeSeconds: reminders come before a timeout/],
    ['a policy declared twice', policiesYaml('x', '  - name: laptop-admin\n    displayName: Again\n    fulfilment: { mode: manual, group: Engineering }\n    stages: []\n'), /accessPolicies\[2\]\.name: "laptop-admin" is already declared at accessPolicies\[1\]/],
  ];
  for (const [what, text, message] of cases) {
    const before = await snapshot();
    const err = await applyProvisioningFile(db, await file('bad-policy.yaml', text), {}).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.type(err, ProvisioningFileError, what);
    t.match((err as Error).message, message, what);
    t.same(await snapshot(), before, `${what}: nothing written, not even the valid policy beside it`);
  }
});
