import { fileURLToPath } from 'node:url';
import t from 'tap';
import { runContractKit } from '../../../connectors/sdk/contract-kit.js';
import { instantiate, loadConnector, validateConfig } from '../../../connectors/sdk/registry.js';
import { createSecretResolver, isSecretReference } from '../../../connectors/sdk/secrets.js';
import { httpError, PermanentError, retryAfterMs, TransientError } from '../../../connectors/sdk/contract.js';

const PLUGIN = fileURLToPath(new URL('../../fixtures/memory-connector.ts', import.meta.url));

t.test('a plugin loads by path and passes the contract kit', async (t) => {
  const def = await loadConnector(PLUGIN);
  t.equal(def.type, 'memory');
  const instance = instantiate(def, { namespace: 'contract-kit' });
  await runContractKit(t, { definition: def, instance, entitlement: { id: 'e1', target: { group: 'eng' } } });
});

t.test('registry errors are permanent and say why', async (t) => {
  await t.rejects(loadConnector('./does/not/exist.js'), PermanentError);
  await t.rejects(loadConnector('no-such-connector-package-xyz'), /cannot be loaded/);
  const def = await loadConnector(PLUGIN);
  t.throws(() => validateConfig(def, { namespace: 42 }), /invalid configuration for connector "memory": \/namespace/);
});

t.test('secrets are references', async (t) => {
  t.ok(isSecretReference('env:GITHUB_TOKEN'));
  t.ok(isSecretReference('file:/run/secrets/token'));
  t.notOk(isSecretReference('ghp_abcdef'));
  const resolve = createSecretResolver({ A: 'alpha' });
  t.equal(await resolve('env:A'), 'alpha');
  await t.rejects(resolve('env:MISSING'), /not set/);
  const err = await resolve('ghp_supersecret').catch((e: Error) => e);
  t.notMatch(String(err), /supersecret/, 'a secret given by mistake is not echoed');
});

t.test('HTTP failures are classified at the boundary', async (t) => {
  const headers = (h: Record<string, string>) => ({ get: (n: string) => h[n.toLowerCase()] ?? null });
  const throttled = httpError('x: grant', 429, 'slow down', headers({ 'retry-after': '7' }));
  t.ok(throttled instanceof TransientError);
  t.equal((throttled as TransientError).retryAfterMs, 7000);
  t.ok(httpError('x', 503, '') instanceof TransientError);
  const forbidden = httpError('x: grant', 403, 'no admin rights');
  t.ok(forbidden instanceof PermanentError);
  t.equal((forbidden as PermanentError).kind, 'forbidden');
  t.match(forbidden.message, 'no admin rights');
  t.equal(retryAfterMs(new Date(Date.now() + 5000).toUTCString())! > 3000, true, 'HTTP-date Retry-After');
});
