/**
 * The web console without a browser (app.inject against PostgreSQL): configuration, escaping, the
 * return-path rule, and the local sign-in of `npm start` (offered only without an identity
 * provider, guarded by a double-submit token, a fresh session id at every sign-in), CSRF refusals
 * and sign-out. The whole flow in chromium is in ./browser.test.ts.
 */
import t from 'tap';
import type { LightMyRequestResponse } from 'fastify';
import { buildApp } from '../../../gateway/app.js';
import { ConfigError, loadGatewayConfig } from '../../../core/config.js';
import { TemporalAccess } from '../../../gateway/temporal.js';
import { html, SafeHtml } from '../../../gateway/console/html.js';
import { safeReturnPath } from '../../../gateway/console/session.js';
import { createTestDatabase } from '../../helpers/db.js';

const SECRET = 'a-session-secret-of-at-least-32-characters';
const IDP = { CONSOLE_OIDC_ISSUER: 'https://idp.example.com', CONSOLE_OIDC_CLIENT_ID: 'console', CONSOLE_OIDC_CLIENT_SECRET: 'client-secret-value', CONSOLE_SESSION_SECRET: SECRET };

t.test('configuration', async (t) => {
  const none = loadGatewayConfig({});
  t.same(none.console, { oidc: undefined, sessionSecret: undefined, userClaim: 'email', sessionTtlSeconds: 28_800, adminGroup: undefined }, 'off by default');
  t.same(loadGatewayConfig(IDP).console.oidc, { issuer: 'https://idp.example.com', clientId: 'console', clientSecret: 'client-secret-value' });
  t.throws(() => loadGatewayConfig({ CONSOLE_OIDC_ISSUER: 'https://idp.example.com', CONSOLE_SESSION_SECRET: SECRET }), new ConfigError('CONSOLE_OIDC_CLIENT_ID', 'is required when CONSOLE_OIDC_ISSUER is set'));
  t.throws(() => loadGatewayConfig({ ...IDP, CONSOLE_SESSION_SECRET: '' }), new ConfigError('CONSOLE_SESSION_SECRET', 'is required when CONSOLE_OIDC_ISSUER is set (it signs the console cookies)'), 'the session secret is required with an issuer');
  t.throws(() => loadGatewayConfig({ CONSOLE_OIDC_CLIENT_ID: 'console' }), new ConfigError('CONSOLE_OIDC_ISSUER', 'is required when CONSOLE_OIDC_CLIENT_ID or CONSOLE_OIDC_CLIENT_SECRET is set'));
  t.throws(() => loadGatewayConfig({ ...IDP, CONSOLE_OIDC_ISSUER: 'http://idp.example.com' }), new ConfigError('CONSOLE_OIDC_ISSUER', 'must use https: (http: only on localhost)'), 'plain http only on localhost');
  t.ok(loadGatewayConfig({ ...IDP, CONSOLE_OIDC_ISSUER: 'http://localhost:9000' }).console.oidc);
  t.throws(() => loadGatewayConfig({ ...IDP, CONSOLE_USER_CLAIM: 'name' }), new ConfigError('CONSOLE_USER_CLAIM', 'must be one of email, sub, got "name"'));
  try {
    loadGatewayConfig({ ...IDP, CONSOLE_SESSION_SECRET: 'short-secret-value' });
    t.fail('a short session secret is refused');
  } catch (err) {
    t.equal((err as ConfigError).variable, 'CONSOLE_SESSION_SECRET', 'a short session secret is refused');
    t.notMatch((err as Error).message, 'short-secret-value', 'without the secret in the message');
  }
});

t.test('escaping and return paths', async (t) => {
  t.equal(html`<p title="${'"x\' & <y>'}">${'<script>'}</p>`.value, '<p title="&quot;x&#39; &amp; &lt;y&gt;">&lt;script&gt;</p>');
  t.equal(html`<ul>${['a<', html`<li>b</li>`]}</ul>`.value, '<ul>a&lt;<li>b</li></ul>', 'nested templates are kept, text in arrays escaped');
  t.equal(html`${null}${undefined}${false}${0}`.value, '0');
  t.ok(html`` instanceof SafeHtml);
  for (const ok of ['/console', '/console/inbox', '/console/requests?created=abc-1']) t.equal(safeReturnPath(ok), ok, `${ok} is kept`);
  for (const bad of ['https://evil.example/', '//evil.example', '/console//evil.example', '/console/\\evil', '/consolex', '/docs', 'console/inbox', '/console/<x>', undefined, 42]) {
    t.equal(safeReturnPath(bad), '/console', `${String(bad)} is replaced`);
  }
});

const database = await createTestDatabase(t);
const { rows } = await database.db.query<{ id: string }>(
  `INSERT INTO users (id, user_name, resource) VALUES (gen_random_uuid(), 'ann@example.com', '{}'), (gen_random_uuid(), 'ben@example.com', '{}') RETURNING id`,
);
const ann = rows[0]!.id;

async function consoleApp(env: Record<string, string>, localSignIn: boolean) {
  const config = { ...loadGatewayConfig({ LOG_LEVEL: 'silent', ...env }), databaseUrl: database.url, temporalAddress: '127.0.0.1:1' };
  const app = await buildApp({ config, db: database.newPool(2), temporal: new TemporalAccess('127.0.0.1:1', 'default', 1000), dispatchOutbox: false, logger: false, consoleLocalSignIn: localSignIn });
  await app.ready();
  t.teardown(() => app.close());
  return app;
}

function cookiesOf(res: LightMyRequestResponse): Record<string, string> {
  return Object.fromEntries(res.cookies.map((c) => [c.name, c.value]));
}

t.test('local sign-in under npm start, without an identity provider', async (t) => {
  const app = await consoleApp({}, true);
  const first = await app.inject({ url: '/console?returnTo=https://evil.example/' });
  t.equal(first.statusCode, 200);
  t.match(first.body, 'Local sign-in (no identity provider configured)', 'clearly marked');
  t.match(first.body, 'ann@example.com');
  t.match(first.headers['content-security-policy'], /default-src 'none'.*style-src 'nonce-/, 'a nonce CSP');
  t.equal(first.headers['x-frame-options'], 'DENY', 'no framing');
  const pre = cookiesOf(first).console_csrf!;
  const token = /name="_csrf" value="([^"]+)"/.exec(first.body)![1]!;

  const forged = await app.inject({ method: 'POST', url: '/console/login/local', payload: `userId=${ann}&_csrf=${token}`, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
  t.equal(forged.statusCode, 403, 'without the matching cookie (a cross-site form) the sign-in is refused');

  const fixed = 'attacker-chosen.value';
  const signed = await app.inject({
    method: 'POST',
    url: '/console/login/local',
    payload: `userId=${ann}&_csrf=${token}&returnTo=${encodeURIComponent('https://evil.example/')}`,
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    cookies: { console_csrf: pre, console_session: fixed },
  });
  t.equal(signed.statusCode, 303);
  t.equal(signed.headers.location, '/console/catalogue', 'a foreign return path is not followed');
  const session = signed.cookies.find((c) => c.name === 'console_session')!;
  t.not(session.value, fixed, 'a new session id, whatever came in');
  t.equal(session.httpOnly, true);
  t.equal(session.sameSite, 'Lax');
  t.equal(session.path, '/console');

  const page = await app.inject({ url: '/console/catalogue', cookies: { console_session: session.value } });
  t.equal(page.statusCode, 200);
  t.match(page.body, 'ann@example.com (local sign-in)', 'the header says how the person signed in');
  t.match(page.body, 'Nothing can be requested yet', 'an empty catalogue says what to do next');
  const csrf = /action="\/console\/logout"><input type="hidden" name="_csrf" value="([^"]+)"/.exec(page.body)![1]!;

  const noToken = await app.inject({ method: 'POST', url: '/console/requests', payload: 'policy=x', headers: { 'content-type': 'application/x-www-form-urlencoded' }, cookies: { console_session: session.value } });
  t.equal(noToken.statusCode, 403, 'a form without the CSRF token is refused');
  const tampered = await app.inject({ url: '/console/catalogue', cookies: { console_session: `${session.value.slice(0, -2)}xx` } });
  t.equal(tampered.statusCode, 303, 'a cookie with a wrong signature is no session');
  const badDecision = await app.inject({ method: 'POST', url: '/console/requests/not-a-uuid/decision', payload: `_csrf=${csrf}&decision=approve`, headers: { 'content-type': 'application/x-www-form-urlencoded' }, cookies: { console_session: session.value } });
  t.equal(badDecision.statusCode, 404, 'an unknown request is a page saying so, not a 500');

  const out = await app.inject({ method: 'POST', url: '/console/logout', payload: `_csrf=${csrf}`, headers: { 'content-type': 'application/x-www-form-urlencoded' }, cookies: { console_session: session.value } });
  t.equal(out.statusCode, 200);
  t.match(out.body, 'You are signed out');
  const after = await app.inject({ url: '/console/catalogue', cookies: { console_session: session.value } });
  t.equal(after.statusCode, 303, 'the old cookie no longer signs in');
  t.equal(after.headers.location, '/console?returnTo=%2Fconsole%2Fcatalogue');
  const { rows: left } = await database.db.query('SELECT 1 FROM console_sessions WHERE user_id = $1', [ann]);
  t.equal(left.length, 0, 'the session row is gone');
});

t.test('local sign-in is refused once an identity provider is set', async (t) => {
  // A local session made before the provider was configured (same session secret) ends with it.
  const before = await consoleApp({ CONSOLE_SESSION_SECRET: SECRET }, true);
  const form = await before.inject({ url: '/console' });
  const token = /name="_csrf" value="([^"]+)"/.exec(form.body)![1]!;
  const local = await before.inject({
    method: 'POST',
    url: '/console/login/local',
    payload: `userId=${ann}&_csrf=${token}`,
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    cookies: { console_csrf: cookiesOf(form).console_csrf! },
  });
  const session = cookiesOf(local).console_session!;
  t.equal((await before.inject({ url: '/console/requests', cookies: { console_session: session } })).statusCode, 200, 'a local session');

  const app = await consoleApp(IDP, true);
  t.equal((await app.inject({ url: '/console/requests', cookies: { console_session: session } })).statusCode, 303, 'is no session once an IdP is set');
  const first = await app.inject({ url: '/console' });
  t.notMatch(first.body, 'Local sign-in', 'not offered');
  t.match(first.body, 'Sign in with your company account');
  const res = await app.inject({
    method: 'POST',
    url: '/console/login/local',
    payload: `userId=${ann}&_csrf=abc`,
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    cookies: { console_csrf: 'abc' },
  });
  t.equal(res.statusCode, 403, 'and refused');
  t.equal(res.cookies.length, 0, 'no session');
});

t.test('without an identity provider and outside npm start, the console says how to configure it', async (t) => {
  const app = await consoleApp({}, false);
  const first = await app.inject({ url: '/console' });
  t.match(first.body, 'Sign-in is not configured');
  t.notMatch(first.body, 'Local sign-in');
  t.equal((await app.inject({ method: 'POST', url: '/console/login/local', payload: `userId=${ann}`, headers: { 'content-type': 'application/x-www-form-urlencoded' } })).statusCode, 403);
  t.equal((await app.inject({ url: '/console/login' })).statusCode, 404);
  t.equal((await app.inject({ url: '/console/callback?code=x&state=y' })).statusCode, 404);
});
