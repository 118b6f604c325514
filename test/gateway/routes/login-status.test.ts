/**
 * Provisioning at first login, in a real browser: the shipped Action (connectors/auth0/actions/
 * first-login.js), run with constructed event and api objects, asks the gateway; the user is sent to
 * the status page, which Debian's chromium (driven by playwright-core through its executable path)
 * shows live over Server-Sent Events while the worker provisions two targets, then returns to
 * Auth0's /continue (intercepted) with a token that onContinuePostLogin accepts. A target failing
 * shows its reason, and the policy denies the login. The page is served by a second gateway
 * instance, so its updates reach it through the database, not through the instance doing the work.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { chromium, type Browser } from 'playwright-core';
import { startTestStack } from '../../helpers/stack.js';
import { startTestGateway } from '../../helpers/gateway.js';
import { memoryTarget } from '../../fixtures/memory-connector.js';

type Hook = (event: unknown, api: unknown) => Promise<void>;
const action = createRequire(import.meta.url)('../../../connectors/auth0/actions/first-login.js') as { onExecutePostLogin: Hook; onContinuePostLogin: Hook };
const PLUGIN = fileURLToPath(new URL('../../fixtures/memory-connector.ts', import.meta.url));
const ACTION_SECRET = 'login-action-secret-0123456789abcdef012';
process.env.LOGIN_TEST_ACTION_SECRET = ACTION_SECRET;

const { database, temporal, gw } = await startTestStack(t, { idleMs: 500, worker: false });
// A second instance, serving the page and its stream only.
const viewer = await startTestGateway(t, { database, temporalAddress: temporal.address, taskQueue: temporal.taskQueue, dispatchOutbox: false });
await viewer.app.listen({ port: 0, host: '127.0.0.1' });
await gw.app.listen({ port: 0, host: '127.0.0.1' });
const urlOf = (app: typeof gw.app) => `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
const api = gw.call;

const ns = `login-${temporal.taskQueue}`;
const crm = memoryTarget(`${ns}-crm`);
const wiki = memoryTarget(`${ns}-wiki`);
await api('PUT', '/api/sources/login', {
  type: 'auth0',
  config: { domain: 'tenant.example', clientId: 'unused', clientSecret: 'env:UNUSED', connection: 'Username-Password-Authentication', actionSecret: 'env:LOGIN_TEST_ACTION_SECRET' },
}, 201);
await api('PUT', '/api/connectors/crm', { id: 'crm', type: PLUGIN, config: { namespace: `${ns}-crm` } });
await api('PUT', '/api/connectors/wiki', { id: 'wiki', type: PLUGIN, config: { namespace: `${ns}-wiki` } });
await api('POST', '/api/entitlements', { connectorId: 'crm', name: 'users', target: { group: 'users' } }, 201);
await api('POST', '/api/entitlements', { connectorId: 'wiki', name: 'readers', target: { group: 'readers' } }, 201);
await api('POST', '/api/rules', { name: 'everyone', condition: 'active eq true', entitlements: ['crm/users', 'wiki/readers'] }, 201);

const browser: Browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
t.teardown(() => browser.close());

// Pages send their users to the status page on the viewer instance (GATEWAY_URL); the Action
// itself talks to the first instance only through that same URL, as in production any instance may answer.
const secrets = { GATEWAY_URL: urlOf(viewer.app), GATEWAY_SOURCE: 'login', GATEWAY_ACTION_SECRET: ACTION_SECRET };

interface Outcome {
  denied?: string;
  redirect?: { url: string; query: Record<string, string> };
}

function apiObject(out: Outcome) {
  const self = {
    access: { deny: (reason: string) => ((out.denied = reason), self) },
    redirect: { sendUserTo: (url: string, options?: { query?: Record<string, string> }) => ((out.redirect = { url, query: options?.query ?? {} }), self) },
    user: { setAppMetadata: () => self },
  };
  return self;
}

async function executeLogin(user: { user_id: string; email: string; name: string }): Promise<Outcome> {
  const out: Outcome = {};
  await action.onExecutePostLogin({ user, request: { hostname: 'tenant.example', query: {} }, secrets }, apiObject(out));
  return out;
}

async function continueLogin(user: { user_id: string }, query: Record<string, string>): Promise<Outcome> {
  const out: Outcome = {};
  await action.onContinuePostLogin({ user, request: { hostname: 'tenant.example', query }, secrets }, apiObject(out));
  return out;
}

/** Opens the status page as Auth0 would redirect to it (adding `state`), recording every event the page receives. */
async function openStatusPage(redirect: NonNullable<Outcome['redirect']>, state: string) {
  const page = await browser.newPage();
  const events: Array<{ type: string; data: any }> = []; // eslint-disable-line @typescript-eslint/no-explicit-any -- the page's JSON
  let continued: string | undefined;
  let markContinued: () => void = () => {};
  const continuedNow = new Promise<void>((resolve) => (markContinued = resolve));
  await page.exposeBinding('recordEvent', (_source, type: string, data: string) => void events.push({ type, data: JSON.parse(data) }));
  // Runs in the page (as text: the tests are compiled without the DOM's types).
  await page.addInitScript({
    content: `(() => {
      const Native = window.EventSource;
      window.EventSource = class extends Native {
        constructor(url, init) {
          super(url, init);
          for (const type of ['status', 'done', 'expired']) this.addEventListener(type, (e) => window.recordEvent(type, e.data));
        }
      };
    })();`,
  });
  await page.route('https://tenant.example/continue**', async (route) => {
    continued = route.request().url();
    markContinued();
    await route.fulfill({ status: 200, contentType: 'text/plain', body: 'back at Auth0' });
  });
  const url = new URL(redirect.url);
  for (const [k, v] of Object.entries(redirect.query)) url.searchParams.set(k, v);
  url.searchParams.set('state', state);
  await page.goto(url.toString());
  return { page, events, continuedNow, continued: () => continued };
}

const ada = { user_id: 'auth0|ada', email: 'ada@example.com', name: 'Ada Lovelace' };

t.test('first login: the page shows the targets turning ready, then continues the login', async (t) => {
  const first = await executeLogin(ada);
  t.equal(first.denied, undefined);
  t.ok(first.redirect, 'the user is sent to the status page');
  t.equal(first.redirect!.url, `${urlOf(viewer.app)}/login-status`);
  t.ok(first.redirect!.query.session, 'with a signed session token');

  const { page, events, continuedNow, continued } = await openStatusPage(first.redirect!, 'state-ada-1');
  // Nothing is provisioned while no worker runs: the page says so.
  await page.locator('body[data-state="pending"]').waitFor();
  await page.locator('#heading', { hasText: 'Setting up your accounts' }).waitFor();
  await temporal.startWorker(database.newPool());
  await continuedNow;

  const statuses = events.filter((e) => e.type === 'status').map((e) => e.data);
  t.equal(statuses[0].state, 'pending', 'the stream starts pending');
  const done = events.find((e) => e.type === 'done')!.data;
  t.equal(done.state, 'ready');
  t.same(done.targets.map((x: { target: string; state: string }) => [x.target, x.state]), [['crm', 'ready'], ['wiki', 'ready']], 'both targets ready');
  t.ok(crm.accounts.size === 1 && wiki.accounts.size === 1, 'the accounts exist in both targets');

  const back = new URL(continued()!);
  t.equal(back.origin + back.pathname, 'https://tenant.example/continue', "back to Auth0's /continue");
  t.equal(back.searchParams.get('state'), 'state-ada-1');
  const query = { state: back.searchParams.get('state')!, gateway_token: back.searchParams.get('gateway_token')! };
  t.same(await continueLogin(ada, query), {}, 'onContinuePostLogin accepts the token: the login goes on');
  t.match((await continueLogin(ada, { ...query, state: 'another-login' })).denied, /could not be completed/, 'not for another login transaction');
  t.match((await continueLogin({ user_id: 'auth0|mallory' }, query)).denied, /could not be completed/, 'not for another user');
  const [head, body, sig] = query.gateway_token.split('.') as [string, string, string];
  const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
  t.match((await continueLogin(ada, { ...query, gateway_token: `${head}.${body}.${flip(sig, 10)}` })).denied, /could not be completed/, 'not with a forged signature');
  const claims = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
  const widened = Buffer.from(JSON.stringify({ ...claims, result: 'ready', allow: true, exp: claims.exp + 3600 })).toString('base64url');
  t.match((await continueLogin(ada, { ...query, gateway_token: `${head}.${widened}.${sig}` })).denied, /could not be completed/, 'not with changed claims');
  await page.close();

  t.same(await executeLogin(ada), {}, 'the next login goes straight through');
});

t.test('a failing target shows its reason, and the policy denies the login', async (t) => {
  wiki.failures.set('createAccount', [{ kind: 'permanent', message: 'the wiki has no seats left' }]);
  const bob = { user_id: 'auth0|bob', email: 'bob@example.com', name: 'Bob' };
  const first = await executeLogin(bob);
  t.ok(first.redirect);
  const { page, continuedNow } = await openStatusPage(first.redirect!, 'state-bob-1');
  await page.locator('body[data-state="failed"]').waitFor();
  t.equal(await page.locator('li[data-target="crm"] .state').textContent(), 'ready');
  t.equal(await page.locator('li[data-target="wiki"] .state').textContent(), 'failed');
  t.match(await page.locator('li[data-target="wiki"] .reason').textContent(), /the wiki has no seats left/, 'the reason is shown');
  t.match(await page.locator('#heading').textContent(), /could not be set up/);
  await page.locator('#continue').click();
  await continuedNow;
  const back = new URL(page.url());
  const out = await continueLogin(bob, { state: back.searchParams.get('state')!, gateway_token: back.searchParams.get('gateway_token')! });
  t.match(out.denied, /wiki: .*the wiki has no seats left/, 'the login is denied, saying what failed');
  await page.close();
});

t.test('a user pushed over SCIM by another identity provider is the one provisioned at their Auth0 login', async (t) => {
  const pushed = await api('POST', '/scim/v2/Users', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], userName: 'Carol@example.com', active: true }, 201);
  const carol = { user_id: 'auth0|carol', email: 'carol@example.com', name: 'Carol' };
  const first = await executeLogin(carol);
  t.equal(first.denied, undefined);
  // Provisioning started with the SCIM push: it may be done before the login, or be waited for.
  if (first.redirect) {
    const { page, events, continuedNow } = await openStatusPage(first.redirect, 'state-carol-1');
    await continuedNow;
    t.equal(events.find((e) => e.type === 'done')!.data.state, 'ready');
    await page.close();
  }
  t.ok(crm.accounts.has(`acct-${pushed.id}`), "the SCIM user's account was created");
  t.ok(wiki.accounts.has(`acct-${pushed.id}`));
  const { rows } = await database.db.query(`SELECT count(*)::int AS n FROM users WHERE lower(user_name) = 'carol@example.com'`);
  t.equal(rows[0].n, 1, 'no second directory user');
});

t.test('bad sessions and requests are refused clearly', async (t) => {
  const page = await viewer.app.inject({ method: 'GET', url: '/login-status?session=not-a-token' });
  t.equal(page.statusCode, 401);
  t.match(page.json().message, /expired or its link is not valid/);
  const stream = await viewer.app.inject({ method: 'GET', url: '/login-status/events?session=a.b.c&state=x' });
  t.equal(stream.statusCode, 401);
  const logins = await viewer.app.inject({ method: 'POST', url: '/auth0/login/logins', payload: { userId: 'x', email: 'x@example.com', hostname: 'tenant.example' } });
  t.equal(logins.statusCode, 401, 'the logins endpoint needs the Action secret');
  const denied: Outcome = {};
  await action.onExecutePostLogin({ user: ada, request: { hostname: 'tenant.example', query: {} }, secrets: { ...secrets, GATEWAY_ACTION_SECRET: 'wrong' } }, apiObject(denied));
  t.match(denied.denied, /could not check your accounts/);
});
