/**
 * Security headers on every answer, and Swagger UI at /docs working under its own policy.
 */
import t from 'tap';
import { createTestDatabase } from '../../helpers/db.js';
import { startTestGateway } from '../../helpers/gateway.js';
import { uniqueTaskQueue } from '../../helpers/temporal.js';
import { DOCS_CSP } from '../../../gateway/plugins/swagger.js';
import { apiSecurityHeaders } from '../../../gateway/plugins/security.js';

const database = await createTestDatabase(t);
const gw = await startTestGateway(t, { database, temporalAddress: '127.0.0.1:1', taskQueue: uniqueTaskQueue(), dispatchOutbox: false });

t.test('API answers, errors and unknown routes carry the security headers', async (t) => {
  const answers = {
    'a SCIM list': await gw.scim({ method: 'GET', url: '/scim/v2/Users' }),
    'a SCIM 401': await gw.scim({ method: 'GET', url: '/scim/v2/Users', token: null }),
    'an admin 403': await gw.scim({ method: 'GET', url: '/api/tokens' }),
    'an unknown route': await gw.scim({ method: 'GET', url: '/nowhere' }),
    'the liveness probe': await gw.app.inject({ url: '/healthz' }),
  };
  for (const [what, res] of Object.entries(answers)) {
    t.equal(res.headers['x-content-type-options'], 'nosniff', `${what}: nosniff`);
    t.equal(res.headers['x-frame-options'], 'DENY', `${what}: no framing`);
    const csp = String(res.headers['content-security-policy']);
    t.match(csp, /default-src 'none'/, `${what}: a policy that loads nothing`);
    t.match(csp, /frame-ancestors 'none'/, `${what}: and may not be framed`);
    t.equal(res.headers['referrer-policy'], 'no-referrer', `${what}: no referrer`);
    t.ok(res.headers['strict-transport-security'], `${what}: HSTS (browsers heed it over HTTPS only)`);
    for (const [name, value] of apiSecurityHeaders()) t.equal(res.headers[name], value, `${what}: ${name} as helmet sets it`);
  }
});

t.test("the API's headers are every header helmet sets for its policy, computed once", async (t) => {
  const names = apiSecurityHeaders().map(([name]) => name);
  for (const name of [
    'content-security-policy',
    'cross-origin-opener-policy',
    'cross-origin-resource-policy',
    'origin-agent-cluster',
    'referrer-policy',
    'strict-transport-security',
    'x-content-type-options',
    'x-dns-prefetch-control',
    'x-download-options',
    'x-frame-options',
    'x-permitted-cross-domain-policies',
    'x-xss-protection',
  ]) {
    t.ok(names.includes(name), `${name} is among them`);
  }
  t.equal(apiSecurityHeaders().find(([name]) => name === 'content-security-policy')?.[1], "default-src 'none';base-uri 'none';form-action 'none';frame-ancestors 'none'");
});

t.test('Swagger UI: its page, assets and document load under its own policy, without a token', async (t) => {
  const page = await gw.app.inject({ url: '/docs' });
  t.equal(page.statusCode, 200);
  t.match(page.headers['content-type'], /^text\/html/);
  t.equal(page.headers['content-security-policy'], DOCS_CSP, 'the page gets the docs policy');
  t.equal(page.headers['x-content-type-options'], 'nosniff');
  t.notMatch(page.body, /<script(?![^>]*\bsrc=)[^>]*>/, 'no inline script, so script-src self suffices');

  // Every script and stylesheet the page names is served from here, under the same policy.
  const assets = [...page.body.matchAll(/(?:src|href)="([^"]+\.(?:js|css|png))"/g)].map((m) => m[1]!);
  t.ok(assets.length >= 4, `the page names its assets (${assets.join(', ')})`);
  for (const asset of assets) {
    t.notMatch(asset, /^(https?:)?\/\//, `${asset} is on this origin`);
    const url = new URL(asset, 'http://localhost/docs').pathname;
    const res = await gw.app.inject({ url });
    t.equal(res.statusCode, 200, `${url} loads`);
    t.equal(res.headers['content-security-policy'], DOCS_CSP, `${url} carries the docs policy`);
  }
  const init = await gw.app.inject({ url: '/docs/static/swagger-initializer.js' });
  t.match(init.body, /\/docs\/json|\.\/json/, 'the initializer loads the document from this origin (connect-src self)');

  const doc = await gw.app.inject({ url: '/docs/json' });
  t.equal(doc.statusCode, 200, 'the OpenAPI document is public');
  t.equal(doc.json().openapi, '3.1.0');
  t.equal((await gw.app.inject({ url: '/docs' })).statusCode, 200, '/docs itself answers');
});
