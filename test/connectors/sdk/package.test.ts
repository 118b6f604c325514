/**
 * The SDK as a third-party author gets it: packed as it would be published, installed (offline)
 * into a scoped plugin package outside the repository, imported by name, type-checked against the
 * shipped declarations, and its contract kit run under node:test. The gateway's registry then
 * loads that plugin by path.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import t from 'tap';
import { PermanentError } from '@scim-gateway/connector-sdk';
import { instantiate, loadConnector } from '@scim-gateway/connector-sdk/registry';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../../', import.meta.url));
const sdkDir = join(root, 'packages', 'connector-sdk');
const npm = (args: string[], cwd: string) => run('npm', args, { cwd, maxBuffer: 10 * 1024 * 1024, env: { ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' } });

const scratch = await mkdtemp(join(tmpdir(), 'connector-sdk-'));
t.teardown(() => rm(scratch, { recursive: true, force: true }));
const plugin = join(scratch, 'acme-chat');

const PLUGIN_SOURCE = `import { Type } from '@sinclair/typebox';
import { defineConnector, PermanentError, checkEndpointUrl, SECRET_REFERENCE_PATTERN, type WriteResult } from '@scim-gateway/connector-sdk';

const members = new Map<string, { active: boolean; groups: Set<string> }>();
const result = (applied: boolean, remoteId?: string): WriteResult => ({ status: applied ? 'applied' : 'alreadyApplied', ...(remoteId ? { remoteId } : {}) });

export default defineConnector({
  type: '@acme/chat',
  description: 'A chat workspace, in memory',
  configSchema: Type.Object({
    url: Type.String({ description: 'API endpoint' }),
    token: Type.String({ pattern: SECRET_REFERENCE_PATTERN, description: 'API token, by reference' }),
    pageSize: Type.Integer({ minimum: 1, default: 2, description: 'members per page' }),
  }),
  entitlementSchema: Type.Object({ group: Type.String({ description: 'user group' }) }),
  capabilities: ['createAccount', 'deleteAccount', 'grant', 'revoke', 'listAccounts', 'listGrants'],
  create({ config }) {
    checkEndpointUrl('@acme/chat', '/url', config.url);
    const page = (all: string[], cursor?: string) => {
      const start = Number(cursor ?? 0);
      const end = start + config.pageSize;
      return { items: all.slice(start, end), ...(end < all.length ? { next: String(end) } : {}) };
    };
    return {
      async validate() {},
      async createAccount(input) {
        if (members.has(input.userName)) return result(false, input.userName);
        members.set(input.userName, { active: true, groups: new Set() });
        return result(true, input.userName);
      },
      async deleteAccount(id) {
        return result(members.delete(id));
      },
      async grant(id, e) {
        const m = members.get(id);
        if (!m) throw new PermanentError('no member ' + id, 'notFound');
        const had = m.groups.has(String(e.target.group));
        m.groups.add(String(e.target.group));
        return result(!had);
      },
      async revoke(id, e) {
        return result(members.get(id)?.groups.delete(String(e.target.group)) ?? false);
      },
      async listAccounts(cursor) {
        const p = page([...members.keys()].sort(), cursor);
        return { ...p, items: p.items.map((remoteId) => ({ remoteId, active: true })) };
      },
      async listGrants(e, cursor) {
        return page([...members].filter(([, m]) => m.groups.has(String(e.target.group))).map(([id]) => id).sort(), cursor);
      },
    };
  },
});
`;

const TEST_SOURCE = `import { test } from 'node:test';
import { runContractKit, seedThroughConnector } from '@scim-gateway/connector-sdk/kit';
import { instantiate } from '@scim-gateway/connector-sdk/registry';
import chat from '../index.ts';

const connect = () => instantiate(chat, { url: 'https://chat.example.com/api', token: 'env:CHAT_TOKEN' });
await runContractKit({ test, definition: chat, connect, entitlement: { id: 'eng', target: { group: 'engineering' } }, ...seedThroughConnector(connect, 5) });
`;

t.test('packed, installed by name into a scoped plugin, type-checked, and its kit run under node:test', async (t) => {
  await npm(['pack', '--pack-destination', scratch], sdkDir);
  const tarball = (await readdir(scratch)).find((f) => f.endsWith('.tgz'));
  t.ok(tarball, 'npm pack made a tarball');
  const { stdout: listing } = await run('tar', ['tzf', join(scratch, tarball!)]);
  t.match(listing, /package\/dist\/index\.d\.ts/, 'with declarations');
  t.notMatch(listing, /package\/src\//, 'and without the TypeScript sources');

  await mkdir(join(plugin, 'test'), { recursive: true });
  // The SDK's one dependency comes from this repository's node_modules, so the install needs no network.
  const pkg = {
    name: '@acme/chat',
    version: '1.0.0',
    type: 'module',
    exports: './index.ts',
    dependencies: { '@scim-gateway/connector-sdk': `file:../${tarball}`, '@sinclair/typebox': `file:${join(root, 'node_modules', '@sinclair', 'typebox')}` },
  };
  await writeFile(join(plugin, 'package.json'), JSON.stringify(pkg, null, 2));
  await writeFile(join(plugin, 'index.ts'), PLUGIN_SOURCE);
  await writeFile(join(plugin, 'test', 'chat.test.ts'), TEST_SOURCE);
  const tsconfig = {
    compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, allowImportingTsExtensions: true, verbatimModuleSyntax: true, skipLibCheck: true, typeRoots: [join(root, 'node_modules', '@types')], types: ['node'] },
    include: ['index.ts', 'test'],
  };
  await writeFile(join(plugin, 'tsconfig.json'), JSON.stringify(tsconfig, null, 2));
  await npm(['install', '--offline', '--no-package-lock', '--ignore-scripts'], plugin);

  const tsc = await run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', '.'], { cwd: plugin }).catch((err: { stdout: string; code: number }) => err);
  const tscCode = 'code' in tsc ? tsc.code : 0;
  t.equal(tscCode, 0, `the plugin type-checks against the shipped declarations${tscCode ? `: ${tsc.stdout}` : ''}`);

  // Plain Node runs the plugin's TypeScript (type stripping), importing the SDK from dist/.
  const env = { ...process.env, NODE_OPTIONS: '' };
  const res = await run(process.execPath, ['--test', '--test-reporter=tap', 'test/chat.test.ts'], { cwd: plugin, env }).catch((err: { stdout: string; stderr: string; code: number }) => err);
  const testCode = 'code' in res ? res.code : 0;
  t.equal(testCode, 0, `node --test passes${testCode ? `: ${res.stdout}\n${res.stderr}` : ''}`);
  t.match(res.stdout, /# pass [1-9]/, 'the kit ran its steps as node:test tests');
  t.match(res.stdout, /# fail 0/);
});

t.test("the registry loads the installed plugin by path, and classifies its SDK copy's errors", async (t) => {
  const def = await loadConnector(join(plugin, 'index.ts'));
  t.equal(def.type, '@acme/chat');
  const c = instantiate(def, { url: 'https://chat.example.com/api', token: 'env:CHAT_TOKEN' });
  const err = await c.grant!('nobody', { id: 'e', target: { group: 'g' } }).catch((e: unknown) => e);
  t.ok(err instanceof PermanentError, 'an error made by the plugin’s own copy of the SDK is a PermanentError here');
  t.throws(() => instantiate(def, { url: 'http://chat.example.com', token: 'env:T' }), /must be an https URL/, 'the plugin uses the SDK’s config checks');
});
