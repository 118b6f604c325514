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
