import { fileURLToPath } from 'node:url';
import t from 'tap';
import { Type } from '@sinclair/typebox';
import { createSecretResolver, defineConnector, httpError, isSecretReference, PermanentError, retryAfterMs, SECRET_REFERENCE_PATTERN, TransientError } from '@scim-gateway/connector-sdk';
import { instantiate, loadConnector, validateConfig } from '@scim-gateway/connector-sdk/registry';

const PLUGIN = fileURLToPath(new URL('../../fixtures/memory-connector.ts', import.meta.url));


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

t.test('schema defaults are applied before validation and reach the connector', async (t) => {
  let seen: unknown;
  const def = defineConnector({
    type: 'defaults',
    description: 'test',
    configSchema: Type.Object({
      url: Type.String({ description: 'endpoint' }),
      pageSize: Type.Integer({ minimum: 1, default: 100, description: 'page size' }),
      retry: Type.Object({ attempts: Type.Integer({ default: 3, description: 'attempts' }) }, { default: {}, description: 'nested' }),
    }),
    entitlementSchema: Type.Object({}),
    capabilities: ['createAccount', 'deleteAccount'],
    create({ config }) {
      seen = config;
      return { validate: async () => {} };
    },
  });
  const given = { url: 'https://example.com' };
  t.same(validateConfig(def, given), { url: 'https://example.com', pageSize: 100, retry: { attempts: 3 } }, 'validateConfig answers the configuration with its defaults');
  t.same(given, { url: 'https://example.com' }, 'the given configuration is left as it was');
  instantiate(def, given);
  t.same(seen, { url: 'https://example.com', pageSize: 100, retry: { attempts: 3 } }, 'create() sees the defaults');
  t.same(validateConfig(def, { url: 'https://example.com', pageSize: 7 }), { url: 'https://example.com', pageSize: 7, retry: { attempts: 3 } }, 'a given value wins over the default');
  t.throws(() => validateConfig(def, { url: 'https://example.com', pageSize: 0 }), /\/pageSize/, 'a given value is still checked');
});

t.test('SECRET_REFERENCE_PATTERN agrees with isSecretReference', async (t) => {
  const re = new RegExp(SECRET_REFERENCE_PATTERN);
  for (const v of ['env:A', 'env:_X1', 'file:/run/secrets/x', 'env:1A', 'plain', 'file:relative', 'env:']) t.equal(re.test(v), isSecretReference(v), v);
});

t.test('errors are recognised across copies of the SDK, subclasses by prototype', async (t) => {
  const foreign = Object.assign(new Error('from another copy'), { [Symbol.for('@scim-gateway/connector-sdk:PermanentError')]: true });
  t.ok(foreign instanceof PermanentError, 'an error branded by another copy is a PermanentError');
  t.notOk(foreign instanceof TransientError, 'and not a TransientError');
  t.notOk(new Error('plain') instanceof PermanentError, 'a plain Error is neither');
  class Throttled extends TransientError {}
  t.ok(new Throttled('x') instanceof TransientError, 'a subclass instance is a TransientError');
  t.ok(new Throttled('x') instanceof Throttled);
  t.notOk(new TransientError('x') instanceof Throttled, 'the base class is not an instance of the subclass');
});
