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

interface Operation {
  responses?: Record<string, { description?: string; content?: Record<string, { schema?: Record<string, unknown> }> }>;
}

t.test('every route declares its answers: a schema for each 2xx with a body, and errors in its protocol\'s format', async (t) => {
  const doc = JSON.parse(await renderOpenApi()) as { paths: Record<string, Record<string, Operation>>; components: { schemas: Record<string, Record<string, unknown>> } };
  const resolve = (schema: Record<string, unknown> | undefined) =>
    typeof schema?.$ref === 'string' ? doc.components.schemas[schema.$ref.replace('#/components/schemas/', '')] : schema;
  const problems: string[] = [];
  let operations = 0;
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      operations++;
      const name = `${method.toUpperCase()} ${path}`;
      const responses = op.responses ?? {};
      const codes = Object.keys(responses);
      const success = codes.filter((c) => c.startsWith('2'));
      if (success.length === 0) problems.push(`${name}: no 2xx answer declared`);
      for (const code of success) {
        const r = responses[code]!;
        if (code === '204') {
          if (r.content) problems.push(`${name} 204: declares a body`);
          continue;
        }
        // Without a response schema @fastify/swagger writes a bare { description: 'Default Response' }.
        const schemas = Object.values(r.content ?? {}).map((c) => c.schema);
        if (schemas.length === 0 || schemas.some((s) => !s || Object.keys(s).length === 0)) problems.push(`${name} ${code}: no response schema`);
      }
      const errors = codes.filter((c) => /^[45]/.test(c));
      if (!errors.includes('500')) problems.push(`${name}: 500 not declared`);
      for (const code of errors) {
        // Readiness answers 503 with the same report as its 200.
        if (path === '/readyz' && code === '503') continue;
        const properties = resolve(Object.values(responses[code]!.content ?? {})[0]?.schema)?.properties as Record<string, { type?: string }> | undefined;
        const shape = path.startsWith('/scim/v2/')
          ? properties?.schemas?.type === 'array' && properties.status?.type === 'string' && properties.detail?.type === 'string'
          : properties?.statusCode?.type === 'integer' && properties.error?.type === 'string' && properties.message?.type === 'string';
        if (!shape) problems.push(`${name} ${code}: not the ${path.startsWith('/scim/v2/') ? 'SCIM error (RFC 7644 §3.12)' : 'API error'} shape`);
      }
    }
  }
  t.ok(operations > 60, `${operations} operations checked`);
  t.same(problems, [], 'every operation declares its answers');
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
