import { readFileSync } from 'node:fs';
import t from 'tap';
import { OPENAPI_FILE, renderOpenApi } from '../scripts/openapi.js';

t.test('the committed OpenAPI document matches the routes', async (t) => {
  const committed = readFileSync(OPENAPI_FILE, 'utf8');
  const current = await renderOpenApi();
  t.ok(committed === current, 'openapi/openapi.json is stale: run `npm run openapi` and commit the result');
  const doc = JSON.parse(current);
  t.equal(doc.openapi, '3.1.0');
  t.ok(doc.paths['/scim/v2/Users'], 'SCIM routes are documented');
  t.ok(doc.paths['/readyz'], 'operations routes are documented');
});

t.test('Swagger UI is served at /docs', async (t) => {
  const { buildApp } = await import('../gateway/app.js');
  const { loadGatewayConfig } = await import('../core/config.js');
  const { createPool } = await import('../core/db/pool.js');
  const { TemporalAccess } = await import('../gateway/temporal.js');
  const app = await buildApp({
    config: loadGatewayConfig({ LOG_LEVEL: 'silent' }),
    db: createPool('postgres://x@127.0.0.1:1/none', 1),
    temporal: new TemporalAccess('127.0.0.1:1', 'default'),
    dispatchOutbox: false,
    logger: false,
  });
  t.teardown(() => app.close());
  const res = await app.inject({ url: '/docs/' });
  t.equal(res.statusCode, 200);
  t.match(res.body, /swagger/i);
  const json = await app.inject({ url: '/docs/json' });
  t.equal(json.json().info.title, 'SCIM provisioning gateway');
});
