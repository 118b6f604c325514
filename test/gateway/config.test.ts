import t from 'tap';
import { ConfigError, loadGatewayConfig } from '../../gateway/config.js';

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
