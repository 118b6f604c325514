import t from 'tap';
import { ConfigError, loadGatewayConfig } from '../../core/config.js';

t.test('defaults', async (t) => {
  const cfg = loadGatewayConfig({});
  t.equal(cfg.port, 8080);
  t.equal(cfg.databaseUrl, undefined);
});

t.test('bad values name the variable', async (t) => {
  t.throws(() => loadGatewayConfig({ PORT: 'eighty' }), new ConfigError('PORT', 'must be a whole number, got "eighty"'));
});

t.test('SCIM_STRICT', async (t) => {
  t.equal(loadGatewayConfig({}).scimStrict, false, 'lenient by default');
  t.equal(loadGatewayConfig({ SCIM_STRICT: 'true' }).scimStrict, true);
  t.equal(loadGatewayConfig({ SCIM_STRICT: 'false' }).scimStrict, false);
  t.throws(() => loadGatewayConfig({ SCIM_STRICT: 'yes' }), new ConfigError('SCIM_STRICT', 'must be one of true, false, got "yes"'));
});

/** True when `env` is refused with a ConfigError naming `variable`. */
function refuses(env: Record<string, string>, variable: string): boolean {
  try {
    loadGatewayConfig(env);
    return false;
  } catch (err) {
    return err instanceof ConfigError && err.variable === variable;
  }
}

t.test('TRUST_PROXY: none by default; true/false, a hop count, or addresses and CIDR ranges', async (t) => {
  t.equal(loadGatewayConfig({}).trustProxy, false, 'no proxy is trusted unless configured');
  t.equal(loadGatewayConfig({ TRUST_PROXY: 'false' }).trustProxy, false);
  t.equal(loadGatewayConfig({ TRUST_PROXY: 'true' }).trustProxy, true);
  t.equal(loadGatewayConfig({ TRUST_PROXY: '2' }).trustProxy, 2);
  t.same(loadGatewayConfig({ TRUST_PROXY: '10.0.0.0/8, 127.0.0.1,::1,fd00::/8' }).trustProxy, ['10.0.0.0/8', '127.0.0.1', '::1', 'fd00::/8']);
  for (const bad of ['yes', '10.0.0.0/33', 'proxy.example', '1.2.3.4/8/1', '0']) {
    t.ok(refuses({ TRUST_PROXY: bad }, 'TRUST_PROXY'), `"${bad}" is refused`);
  }
});

t.test('failed-authentication limit and outbox tries have bounded settings', async (t) => {
  const cfg = loadGatewayConfig({});
  t.equal(cfg.authFailureLimit, 20);
  t.equal(cfg.authFailureWindowMs, 60_000);
  t.equal(cfg.outboxMaxAttempts, 20);
  t.ok(refuses({ AUTH_FAILURE_LIMIT: '0' }, 'AUTH_FAILURE_LIMIT'), 'a limit of 0 is refused');
  t.ok(refuses({ OUTBOX_MAX_ATTEMPTS: '0' }, 'OUTBOX_MAX_ATTEMPTS'), 'no tries at all is refused');
});
