/**
 * The web console in a real browser (Debian's chromium driven by playwright-core), signed in through
 * a real OpenID provider (oidc-provider, authorization code + PKCE), on PostgreSQL and the Temporal
 * dev server with a worker and a real SCIM target: a two-stage request is made, decided by the
 * manager and the security team in their inboxes, and the requester sees it granted. Besides: a
 * non-approver sees no approve action and a forged decision gets 403, a form without its CSRF token
 * gets 403, and signing out ends the session (a copy of the old cookie is worthless).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import Provider from 'oidc-provider';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { userBody } from '../../helpers/gateway.js';
import { eventually } from '../../helpers/temporal.js';
import { startTestStack } from '../../helpers/stack.js';
import { startScimmyServer } from '../../connectors/scim/scimmy-server.js';

const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const ENTERPRISE = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';
const CLIENT_SECRET = 'console-client-secret-for-the-browser-test';

// The provider's server listens first (its address is the issuer); the provider itself is made once
// the gateway's address (the redirect URI) is known.
let handler: (req: IncomingMessage, res: ServerResponse) => unknown = (_req, res) => res.writeHead(503).end();
const idpServer = createServer((req, res) => void handler(req, res));
await new Promise<void>((done) => idpServer.listen(0, '127.0.0.1', done));
t.teardown(() => new Promise<void>((done) => idpServer.close(() => done())));
const issuer = `http://localhost:${(idpServer.address() as AddressInfo).port}`;

const { database, gw } = await startTestStack(t, {
  idleMs: 1000,
  env: {
    CONSOLE_OIDC_ISSUER: issuer,
    CONSOLE_OIDC_CLIENT_ID: 'console',
    CONSOLE_OIDC_CLIENT_SECRET: CLIENT_SECRET,
    CONSOLE_SESSION_SECRET: 'a-session-secret-of-at-least-32-characters',
  },
});
await gw.app.listen({ host: '127.0.0.1', port: 0 });
const base = `http://127.0.0.1:${(gw.app.server.address() as AddressInfo).port}`;

// The company's accounts: login name → email, the claim the console maps to directory users.
const accounts: Record<string, string> = { alice: 'alice@example.com', bob: 'bob@example.com', carol: 'carol@example.com', eve: 'eve@example.com', mallory: 'mallory@example.com' };
const provider = new Provider(issuer, {
  clients: [{ client_id: 'console', client_secret: CLIENT_SECRET, redirect_uris: [`${base}/console/callback`], token_endpoint_auth_method: 'client_secret_post', grant_types: ['authorization_code'], response_types: ['code'] }],
  pkce: { required: () => true },
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  cookies: { keys: ['browser-test-cookie-key'] },
  findAccount: async (_ctx, id) => (accounts[id] ? { accountId: id, claims: async () => ({ sub: id, email: accounts[id]!, email_verified: true }) } : undefined),
  features: { devInteractions: { enabled: true } },
});
handler = provider.callback();

const target = await startScimmyServer({ token: 'console-target-token' });
t.teardown(() => target.close());
process.env.CONSOLE_TARGET_TOKEN = 'console-target-token';
const api = gw.call;
await api('PUT', '/api/connectors/target', { id: 'target', type: 'scim', config: { baseUrl: target.baseUrl, token: 'env:CONSOLE_TARGET_TOKEN' } }, 200);
await api('POST', '/api/entitlements', { connectorId: 'target', name: 'vpn', target: { group: 'VPN', create: true } }, 201);
const user = async (userName: string, extra: Record<string, unknown> = {}) => (await api('POST', '/scim/v2/Users', userBody(userName, extra), 201)).id as string;
const bob = await user('bob@example.com');
await user('alice@example.com', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:User', ENTERPRISE], title: 'Engineer <b>&', [ENTERPRISE]: { manager: { value: bob } } });
const carol = await user('carol@example.com');
await user('eve@example.com');
await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Security', members: [{ value: carol }] }, 201);
await api(
  'PUT',
  '/api/access-policies/vpn',
  {
    entitlement: 'target/vpn',
    displayName: 'VPN',
    description: 'Remote access to the office network',
    durations: { defaultSeconds: 3600, maxSeconds: 86_400 },
    justificationRequired: true,
    fulfilment: { mode: 'automatic' },
    stages: [
      { name: 'manager', approvers: { manager: 1 } },
      { name: 'security team', approvers: { group: 'Security' } },
    ],
  },
  201,
);

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
t.teardown(() => browser.close());

/** A fresh browser profile signed in as `login` through the provider; answers it on the console's first page. */
async function signIn(login: string, path = '/console'): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${base}${path}`);
  await page.getByRole('link', { name: 'Sign in with your company account' }).click();
  await page.locator('input[name=login]').fill(login);
  await page.locator('input[name=password]').fill('any');
  await page.getByRole('button', { name: 'Sign-in' }).click();
  await page.waitForLoadState();
  if (!page.url().startsWith(base)) {
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.waitForURL(`${base}/**`);
  }
  return { context, page };
}

async function csrfOf(page: Page): Promise<string> {
  return (await page.locator('form[action="/console/logout"] input[name=_csrf]').getAttribute('value'))!;
}

t.test('request, two approvals in the inboxes, granted; refusals; sign-out', async (t) => {
  const alice = await signIn('alice', '/console?returnTo=https://evil.example/');
  t.equal(alice.page.url(), `${base}/console/catalogue`, 'signed in, on the catalogue; a foreign return address is ignored');
  const headers = await (await alice.page.goto(`${base}/console/catalogue`))!.allHeaders();
  t.match(headers['content-security-policy'], /style-src 'nonce-[0-9a-f]+'/, 'the page has a CSP with a style nonce');
  t.match(headers['content-security-policy'], /script-src 'none'/, 'and allows no script');
  const cookie = (await alice.context.cookies()).find((c) => c.name === 'console_session')!;
  t.ok(cookie.httpOnly, 'the session cookie is HttpOnly');
  t.equal(cookie.sameSite, 'Lax', 'and SameSite=Lax');

  await alice.page.getByLabel('Justification (required)').fill('on call <script>alert(1)</script>');
  await alice.page.getByLabel('Duration in hours (empty: the default)').fill('2');
  await alice.page.getByRole('button', { name: 'Request VPN' }).click();
  await alice.page.waitForURL(`${base}/console/requests?created=*`);
  const id = new URL(alice.page.url()).searchParams.get('created')!;
  t.match(await alice.page.locator(`#r-${id}`).locator('..').textContent(), /waiting for approval · stage 1 of 2/, 'my requests shows it waiting at stage 1 of 2');

  const eve = await signIn('eve', '/console/inbox');
  t.equal(eve.page.url(), `${base}/console/inbox`, 'the sign-in returns to the page asked for');
  t.match(await eve.page.locator('main').textContent(), 'Nothing is waiting for your decision', 'a non-approver has an empty inbox');
  t.equal(await eve.page.getByRole('button', { name: 'Approve' }).count(), 0, 'and no approve button');
  const forged = await eve.context.request.post(`${base}/console/requests/${id}/decision`, { form: { _csrf: await csrfOf(eve.page), decision: 'approve' }, maxRedirects: 0 });
  t.equal(forged.status(), 403, 'a forged decision with a valid CSRF token gets 403 from the server');
  t.match(await forged.text(), 'not an approver');

  const bob = await signIn('bob', '/console/inbox');
  const card = bob.page.locator(`article:has(#r-${id})`);
  await eventually(async () => {
    await bob.page.reload();
    return (await card.count()) > 0;
  }, 30_000, "the request in the manager's inbox");
  const context = await card.textContent();
  t.match(context, 'stage 1 of 2', 'the inbox shows the stage');
  t.match(context, 'alice@example.com', 'the requester');
  t.match(context, 'Engineer <b>&', "the requester's title, as text");
  t.match(context, 'on call <script>alert(1)</script>', 'the justification, escaped (shown as text, not run)');
  t.equal(await bob.page.locator('main script').count(), 0, 'no element came out of the justification');

  const noToken = await bob.context.request.post(`${base}/console/requests/${id}/decision`, { form: { decision: 'approve' }, maxRedirects: 0 });
  t.equal(noToken.status(), 403, 'a decision without the CSRF token gets 403');
  const wrongToken = await bob.context.request.post(`${base}/console/requests/${id}/decision`, { form: { decision: 'approve', _csrf: 'x'.repeat(43) }, maxRedirects: 0 });
  t.equal(wrongToken.status(), 403, 'and with a wrong one too');
  const { rows: none } = await database.db.query('SELECT 1 FROM access_request_decisions WHERE request_id = $1 AND accepted', [id]);
  t.equal(none.length, 0, 'neither was recorded as a decision');

  // CONSOLE_SCREENSHOT_DIR=docs/images refreshes the screenshot the documentation shows.
  if (process.env.CONSOLE_SCREENSHOT_DIR) {
    await bob.page.setViewportSize({ width: 1000, height: 760 });
    await bob.page.screenshot({ path: `${process.env.CONSOLE_SCREENSHOT_DIR}/console-approvals.png` });
  }
  await card.getByLabel('Comment (optional)').fill('fine for the on-call week');
  await card.getByRole('button', { name: 'Approve' }).click();
  await bob.page.waitForURL(`${base}/console/inbox?decided=*`);
  t.match(await bob.page.locator('[role=status]').textContent(), 'Your decision was recorded');

  const carolSession = await signIn('carol', '/console/inbox');
  const carolCard = carolSession.page.locator(`article:has(#r-${id})`);
  await eventually(async () => {
    await carolSession.page.reload();
    return (await carolCard.count()) > 0;
  }, 30_000, "the request in the security team's inbox");
  t.match(await carolCard.textContent(), /stage 2 of 2[\s\S]*bob@example.com approved/, 'stage 2 of 2, with the manager’s approval shown');
  await carolCard.getByRole('button', { name: 'Approve' }).click();
  await carolSession.page.waitForURL(`${base}/console/inbox?decided=*`);

  await eventually(async () => {
    await alice.page.goto(`${base}/console/requests`);
    const status = await alice.page.locator(`article:has(#r-${id}) .status`).getAttribute('data-status');
    return status === 'fulfilled' || status === 'failed' ? status : undefined;
  }, 90_000, 'the request to be granted');
  t.equal(await alice.page.locator(`article:has(#r-${id}) .status`).textContent(), 'granted', 'the requester sees it granted');
  if (process.env.CONSOLE_SCREENSHOT_DIR) {
    await alice.page.setViewportSize({ width: 1000, height: 760 });
    await alice.page.screenshot({ path: `${process.env.CONSOLE_SCREENSHOT_DIR}/console-my-requests.png` });
  }
  const remote = target.findUserByName('alice@example.com');
  t.ok((target.findGroupByName('VPN')?.members as Array<{ value: string }> | undefined)?.some((m) => m.value === remote?.id), 'and the target has alice in the VPN group');
  const { rows: decisions } = await database.db.query<{ comment: string | null }>('SELECT comment FROM access_request_decisions WHERE request_id = $1 AND accepted ORDER BY stage', [id]);
  t.equal(decisions[0]?.comment, 'fine for the on-call week', "the manager's comment is recorded");

  const oldCookie = (await alice.context.cookies()).find((c) => c.name === 'console_session')!;
  await alice.page.getByRole('button', { name: 'Sign out' }).click();
  t.match(await alice.page.locator('[role=status]').textContent(), 'You are signed out');
  await alice.page.goto(`${base}/console/requests`);
  t.match(alice.page.url(), `${base}/console?returnTo=`, 'after signing out, pages ask to sign in');
  const replay = await browser.newContext();
  await replay.addCookies([oldCookie]);
  const replayed = await replay.request.get(`${base}/console/requests`, { maxRedirects: 0 });
  t.equal(replayed.status(), 303, 'a copy of the old session cookie no longer signs anyone in');
  await replay.close();
  for (const s of [alice, eve, bob, carolSession]) await s.context.close();
});

t.test('a person the IdP knows but the directory does not is refused', async (t) => {
  const mallory = await signIn('mallory');
  t.match(mallory.page.url(), `${base}/console/callback?`);
  t.match(await mallory.page.locator('[role=alert]').textContent(), 'No single active directory user matches mallory@example.com');
  t.notOk((await mallory.context.cookies()).some((c) => c.name === 'console_session' && c.value !== ''), 'and gets no session');
  await mallory.context.close();
});
