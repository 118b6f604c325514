/**
 * `npm run openapi`: writes the OpenAPI document that @fastify/swagger builds from the route
 * schemas to openapi/openapi.json. A test fails when the committed file is stale.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { buildApp } from '../gateway/app.js';
import { loadGatewayConfig } from '../core/config.js';
import { createPool } from '../core/db/pool.js';
import { TemporalAccess } from '../gateway/temporal.js';

export const OPENAPI_FILE = fileURLToPath(new URL('../openapi/openapi.json', import.meta.url));

/** The document as `npm run openapi` writes it. No database or Temporal connection is made. */
export async function renderOpenApi(): Promise<string> {
  const config = loadGatewayConfig({ LOG_LEVEL: 'silent' });
  const app = await buildApp({
    config,
    db: createPool('postgres://openapi@127.0.0.1:1/none', 1),
    temporal: new TemporalAccess('127.0.0.1:1', config.temporalNamespace),
    dispatchOutbox: false,
    logger: false,
  });
  await app.ready();
  const doc = app.swagger();
  await app.close();
  return `${JSON.stringify(doc, null, 2)}\n`;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  writeFileSync(OPENAPI_FILE, await renderOpenApi());
  process.stdout.write(`wrote ${OPENAPI_FILE}\n`);
}
