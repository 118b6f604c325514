/**
 * The administrators' directory pages of the console over HTTP, on PostgreSQL: user search and
 * paging, a user's provisioning statuses and their event stream delivering a change made in the
 * database (LISTEN/NOTIFY), who has what and why with its filters and CSV export (quoting and
 * formula prefixes), the audit log's filters, paging and chain verification, and 403 for a signed-in
 * non-administrator on every one of these URLs. Debian's chromium (playwright-core) checks that the
 * page's own script, allowed by its CSP nonce, updates the table from the stream. Sessions are rows in console_sessions, as a sign-in
 * makes them (the sign-in itself is covered by console.test.ts and browser.test.ts).
 */
import { createHash, randomBytes } from 'node:crypto';
import t from 'tap';
import type { LightMyRequestResponse } from 'fastify';
import { chromium } from 'playwright-core';
import { createTestDatabase } from '../../helpers/db.js';
import { startTestGateway, userBody } from '../../helpers/gateway.js';
import { Cookies } from '../../../gateway/console/session.js';
import { userSyncWorkflowId } from '../../../workflows/client.js';

const SECRET = 'a-session-secret-of-at-least-32-characters';
const database = await createTestDatabase(t);
const db = database.db;
const gw = await startTestGateway(t, {
  database,
  temporalAddress: '127.0.0.1:1',
  taskQueue: 'admin-directory',
  dispatchOutbox: false,
  scopes: ['scim:read', 'scim:write', 'admin'],
  env: {
    CONSOLE_OIDC_ISSUER: 'https://idp.example.com',
    CONSOLE_OIDC_CLIENT_ID: 'console',
    CONSOLE_SESSION_SECRET: SECRET,
    CONSOLE_ADMIN_GROUP: 'Console Admins',
    TEMPORAL_UI_URL: 'http://temporal-ui.example:8233/',
  },
});
const api = gw.call;

// ------------------------------------------------------------------ the directory

const ann = (await api('POST', '/scim/v2/Users', userBody('ann@example.com', { displayName: 'Ann Admin', emails: [{ value: 'ann@corp.example', primary: true }] }), 201)).id as string;
const ben = (await api('POST', '/scim/v2/Users', userBody('ben@example.com', { displayName: 'Quentin Zed <script>alert(1)</script>' }), 201)).id as string;
const evil = (await api('POST', '/scim/v2/Users', userBody('=2+3@example.com', { emails: [{ value: 'formula@corp.example' }] }), 201)).id as string;
for (let i = 0; i < 55; i++) await api('POST', '/scim/v2/Users', userBody(`bulk-${String(i).padStart(2, '0')}@example.com`), 201);
await api('POST', '/scim/v2/Groups', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'], displayName: 'Console Admins', members: [{ value: ann }] }, 201);
const tokenActor = (await db.query<{ actor: string }>(`SELECT actor FROM audit_events WHERE action = 'user.created' LIMIT 1`)).rows[0]!.actor;

// Targets and what people hold: a rule grant, a direct grant, a requested grant with its approver, and
// a membership reconciliation found in a target with no grant behind it.
await db.query(`INSERT INTO connectors (id, type) VALUES ('crm', 'webhook'), ('wiki', 'webhook')`);
const { rows: ents } = await db.query<{ id: string; key: string }>(
  `INSERT INTO entitlements (id, connector_id, name, target) VALUES
     (gen_random_uuid(), 'crm', 'users', '{}'), (gen_random_uuid(), 'wiki', 'readers', '{}'), (gen_random_uuid(), 'wiki', '-editors, "beta"', '{}')
   RETURNING id, connector_id || '/' || name AS key`,
);
const ent = Object.fromEntries(ents.map((e) => [e.key, e.id]));
await db.query(`INSERT INTO rules (id, name, condition, entitlement_ids) VALUES (gen_random_uuid(), 'everyone', 'active eq true', ARRAY[$1::uuid])`, [ent['crm/users']]);
for (const user of [ann, ben]) await db.query(`INSERT INTO grants (id, user_id, entitlement_id, reason) VALUES (gen_random_uuid(), $1, $2, 'rule:everyone')`, [user, ent['crm/users']]);
await api('POST', '/api/grants', { userId: 'ben@example.com', entitlement: 'wiki/readers' }, 201);
const request = '00000000-0000-4000-8000-000000000001';
await db.query(
  `INSERT INTO access_policies (id, name, entitlement_id, display_name, fulfilment) VALUES ('00000000-0000-4000-8000-000000000002', 'wiki-editors', $1, 'Wiki editors', 'automatic')`,
  [ent['wiki/-editors, "beta"']],
);
await db.query(
  `INSERT INTO access_requests (id, policy_id, policy, requester_id, justification, status, created_by)
   VALUES ($1, '00000000-0000-4000-8000-000000000002', '{"name": "wiki-editors"}', $2, 'needs to fix "docs", today', 'fulfilled', 'test')`,
  [request, evil],
);
await db.query(`INSERT INTO access_request_decisions (request_id, stage, approver_id, decision, accepted) VALUES ($1, 0, $2, 'approve', true)`, [request, ann]);
await db.query(`INSERT INTO grants (id, user_id, entitlement_id, reason) VALUES (gen_random_uuid(), $1, $2, $3)`, [evil, ent['wiki/-editors, "beta"'], `request:${request}`]);
await db.query(`INSERT INTO accounts (user_id, connector_id, state, remote_id) VALUES ($1, 'wiki', 'active', 'r-ann'), ($2, 'crm', 'disabled', 'r-evil')`, [ann, evil]);
await db.query(`INSERT INTO account_grants (user_id, entitlement_id) VALUES ($1, $2)`, [ann, ent['wiki/readers']]);
await db.query(
  `INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, before, after)
   VALUES ('reconcile:run-1', 'account.membershipFound', 'Account', $1, 'reconcile: the target has a membership that was not applied', $2, $3)`,
  [`wiki:${ann}`, JSON.stringify({ entitlementId: ent['wiki/readers'], applied: false }), JSON.stringify({ entitlementId: ent['wiki/readers'], applied: true, runId: 'run-1' })],
);
// Ann's workflow has applied every change announced for her (ben's has not, yet).
await db.query(`INSERT INTO user_sync_state (user_id, synced_seq, workflow_id, run_id) VALUES ($1, (SELECT max(id) FROM outbox), 'test', 'test')`, [ann]);

// ------------------------------------------------------------------ sessions

async function sessionOf(userId: string): Promise<string> {
  const id = randomBytes(32).toString('base64url');
  await db.query(`INSERT INTO console_sessions (id_hash, user_id, csrf, via, expires_at) VALUES ($1, $2, $3, 'oidc', now() + interval '1 hour')`, [
    createHash('sha256').update(id).digest(),
    userId,
    randomBytes(16).toString('hex'),
  ]);
  return new Cookies(SECRET).sign(id);
}
const asAdmin = await sessionOf(ann);
const asMember = await sessionOf(ben);
const get = (url: string, session = asAdmin) => gw.app.inject({ url, cookies: { console_session: session } });
/** The text of a page with the markup removed, for matching sentences. */
const text = (res: LightMyRequestResponse) => res.body.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ');
/** The text of the page's table rows only (not its filter form). */
const rowsText = (res: LightMyRequestResponse) => (/<tbody>([^]*)<\/tbody>/.exec(res.body)?.[1] ?? '').replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ');

t.test('only administrators: 403 for everyone else, sign-in for nobody', async (t) => {
  const urls = [
    '/console/admin/users',
    '/console/admin/users?q=ben',
    `/console/admin/users/${ben}`,
    `/console/admin/users/${ben}/status`,
    '/console/admin/live-status.js',
    '/console/admin/access',
    '/console/admin/access.csv',
    '/console/admin/audit',
    '/console/admin/audit/verify',
  ];
  for (const url of urls) {
    const res = await get(url, asMember);
    t.equal(res.statusCode, 403, `${url}: 403 for a non-administrator`);
    t.match(res.body, 'Administrators only');
    t.notMatch(res.body, 'ben@example.com</a>', 'and nothing of the page');
    const anonymous = await gw.app.inject({ url });
    t.equal(anonymous.statusCode, 303, `${url}: sign in first`);
  }
  const member = await get('/console/requests', asMember);
  t.notMatch(member.body, '/console/admin/', 'no administrators’ links for a non-administrator');
  const admin = await get('/console/requests');
  t.match(admin.body, '<a href="/console/admin/users">Users</a>', 'administrators see them');
  t.match(admin.body, '<a href="/console/admin/access">Who has what</a>');
  t.match(admin.body, '<a href="/console/admin/audit">Audit log</a>');
});

t.test('user search', async (t) => {
  const all = await get('/console/admin/users');
  t.equal(all.statusCode, 200);
  t.match(text(all), '58 users.');
  t.match(text(all), 'Page 1 of 2');
  t.match(all.body, '<a href="/console/admin/users?page=2" rel="next">Next page</a>');

  const bulk = await get('/console/admin/users?q=BULK-');
  t.match(text(bulk), '55 users matching “BULK-”', 'any case');
  t.equal((bulk.body.match(/<tr><th scope="row">/g) ?? []).length, 50, '50 a page');
  const second = await get('/console/admin/users?q=BULK-&page=2');
  t.equal((second.body.match(/<tr><th scope="row">/g) ?? []).length, 5);
  t.match(second.body, 'bulk-54@example.com');
  t.match(second.body, 'rel="prev">Previous page</a>');

  const byName = await get('/console/admin/users?q=zed');
  t.match(byName.body, `<a href="/console/admin/users/${ben}">ben@example.com</a>`, 'by display name');
  t.match(byName.body, 'Quentin Zed &lt;script&gt;alert(1)&lt;/script&gt;', 'escaped');
  t.notMatch(byName.body, '<script>alert(1)');
  const byEmail = await get('/console/admin/users?q=formula%40corp');
  t.match(text(byEmail), '1 user matching', 'by email');
  t.match(byEmail.body, '=2+3@example.com');
  const quote = await get(`/console/admin/users?q=${encodeURIComponent('a" or userName pr or "')}`);
  t.equal(quote.statusCode, 200, 'quotes are part of the text searched for, not of the filter');
  t.match(text(quote), 'No user’s userName, display name or email contains', 'an empty result says what to try');
  const long = await get(`/console/admin/users?q=${'x'.repeat(201)}`);
  t.equal(long.statusCode, 400);
  t.match(text(long), 'Search for at most 200 characters');
});

t.test("a user's page: statuses, links, and the live script allowed by the page's CSP", async (t) => {
  const page = await get(`/console/admin/users/${ben}`);
  t.equal(page.statusCode, 200);
  t.match(page.body, '<tr data-connector="crm"><th scope="row">crm</th><td><span class="status state-pending" data-state="pending">Pending</span>', 'crm: waiting for the workflow');
  t.match(page.body, '<tr data-connector="wiki">');
  t.match(text(page), 'Changes to this user are still being applied by their workflow.');
  const workflow = userSyncWorkflowId(ben);
  t.match(page.body, `<a href="http://temporal-ui.example:8233/namespaces/default/workflows/${encodeURIComponent(workflow)}">${workflow}</a> in the Temporal UI`);
  t.match(page.body, `href="/console/admin/access?user=ben%40example.com"`);
  t.match(page.body, `href="/console/admin/audit?userId=${ben}"`);
  const nonce = /script-src 'nonce-([0-9a-f]+)'/.exec(page.headers['content-security-policy'] as string)?.[1];
  t.ok(nonce, 'scripts only with the nonce');
  t.match(page.headers['content-security-policy'], "connect-src 'self'");
  t.match(page.body, `<script nonce="${nonce}" src="/console/admin/live-status.js" defer></script>`);
  const list = await get('/console/admin/users');
  t.match(list.headers['content-security-policy'], "script-src 'none'", 'pages without the script allow none');
  t.notMatch(list.headers['content-security-policy'], 'connect-src');
  const script = await get('/console/admin/live-status.js');
  t.equal(script.statusCode, 200);
  t.match(script.headers['content-type'], 'text/javascript');
  t.match(script.body, "new EventSource(note.getAttribute('data-src'))");

  const settled = await get(`/console/admin/users/${ann}`);
  t.match(settled.body, 'data-connector="crm"', 'the rule grant');
  t.match(text(settled), 'Every change to this user has been applied by their workflow.');
  t.match(settled.body, /data-connector="crm">(?:(?!<\/tr>).)*state-failed(?:(?!<\/tr>).)*the account was not created/s, 'settled without an account: failed, with why');
  t.match(settled.body, /data-connector="wiki">(?:(?!<\/tr>).)*state-failed(?:(?!<\/tr>).)*the account was not removed/s, 'an account with a membership and no grant left: failed once settled');
  const removed = await get(`/console/admin/users/${evil}`);
  t.match(removed.body, /data-connector="crm"><th scope="row">crm<\/th><td><span class="status state-removed" data-state="removed">Removed<\/span><\/td>\n<td>disabled<\/td>/, 'a disabled account with nothing applied: removed');
  t.match(removed.body, 'data-connector="wiki"', 'beside the requested access');

  t.equal((await get('/console/admin/users/not-a-uuid')).statusCode, 404);
  t.equal((await get('/console/admin/users/00000000-0000-4000-8000-00000000abcd')).statusCode, 404);
});

t.test('the status stream delivers a change made in the database', async (t) => {
  await gw.app.listen({ port: 0, host: '127.0.0.1' });
  const port = (gw.app.server.address() as { port: number }).port;
  const abort = new AbortController();
  t.teardown(() => abort.abort());
  const res = await fetch(`http://127.0.0.1:${port}/console/admin/users/${ben}/status`, { headers: { cookie: `console_session=${asAdmin}` }, signal: abort.signal });
  t.equal(res.status, 200);
  t.match(res.headers.get('content-type'), 'text/event-stream');
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the stream's JSON
  async function nextStatus(): Promise<any> {
    for (;;) {
      const end = buffer.indexOf('\n\n');
      if (end >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = /^event: status\ndata: (.*)$/m.exec(block);
        if (data) return JSON.parse(data[1]!);
        continue;
      }
      const { value, done } = await reader.read();
      if (done) throw new Error('the stream ended');
      buffer += decoder.decode(value, { stream: true });
    }
  }
  const first = await nextStatus();
  t.same(
    first.connectors.map((c: { connectorId: string; state: string }) => [c.connectorId, c.state]),
    [
      ['crm', 'pending'],
      ['wiki', 'pending'],
    ],
    'the status at once',
  );
  // The worker's part, as its steps record it: the wiki account with its membership, and the round done.
  await db.query(`INSERT INTO accounts (user_id, connector_id, state, remote_id, last_sync_at) VALUES ($1, 'wiki', 'active', 'r-ben', now())`, [ben]);
  await db.query(`INSERT INTO account_grants (user_id, entitlement_id) VALUES ($1, $2)`, [ben, ent['wiki/readers']]);
  let status = await nextStatus();
  while (status.connectors.find((c: { connectorId: string }) => c.connectorId === 'wiki').state !== 'provisioned') status = await nextStatus();
  t.pass('wiki turned provisioned on the stream');
  await db.query(`INSERT INTO user_sync_state (user_id, synced_seq, workflow_id, run_id) VALUES ($1, (SELECT max(id) FROM outbox), 'test', 'test')`, [ben]);
  status = await nextStatus();
  while (!status.settled) status = await nextStatus();
  t.same(
    status.connectors.map((c: { connectorId: string; state: string; reason?: string }) => [c.connectorId, c.state, c.reason]),
    [
      ['crm', 'failed', 'the account was not created'],
      ['wiki', 'provisioned', undefined],
    ],
    'the round finished: crm failed with why, wiki provisioned',
  );
  abort.abort();
  const page = await get(`/console/admin/users/${ben}`);
  t.match(page.body, /data-connector="wiki">(?:(?!<\/tr>).)*state-provisioned/s, 'and the page shows it without script');
});

t.test("in a browser, the page's own script keeps the table live under the page's CSP", async (t) => {
  const port = (gw.app.server.address() as { port: number }).port;
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
  t.teardown(() => browser.close());
  const context = await browser.newContext();
  await context.addCookies([{ name: 'console_session', value: asAdmin, domain: '127.0.0.1', path: '/console', httpOnly: true, sameSite: 'Lax' }]);
  const page = await context.newPage();
  const refused: string[] = [];
  page.on('console', (m) => {
    if (/Content.Security.Policy/i.test(m.text())) refused.push(m.text());
  });
  await page.goto(`http://127.0.0.1:${port}/console/admin/users/${evil}`);
  await page.locator('#live-note', { hasText: /^Live/ }).waitFor();
  t.equal(await page.locator('tr[data-connector="wiki"] [data-state]').getAttribute('data-state'), 'pending');
  await db.query(`INSERT INTO accounts (user_id, connector_id, state, remote_id) VALUES ($1, 'wiki', 'active', 'r-evil')`, [evil]);
  await db.query(`INSERT INTO account_grants (user_id, entitlement_id) VALUES ($1, $2)`, [evil, ent['wiki/-editors, "beta"']]);
  await page.waitForSelector('tr[data-connector="wiki"] [data-state="provisioned"]');
  t.equal(await page.locator('tr[data-connector="wiki"] .status').textContent(), 'Provisioned', 'the change arrived without a reload');
  t.equal(await page.locator('tr[data-connector="crm"] .status').textContent(), 'Removed');
  t.same(refused, [], 'nothing refused by the Content-Security-Policy');
  // CONSOLE_SCREENSHOT_DIR=docs/images refreshes the screenshots the documentation shows.
  if (process.env.CONSOLE_SCREENSHOT_DIR) {
    await page.setViewportSize({ width: 1100, height: 760 });
    await page.screenshot({ path: `${process.env.CONSOLE_SCREENSHOT_DIR}/console-user-status.png` });
    await page.goto(`http://127.0.0.1:${port}/console/admin/access`);
    await page.screenshot({ path: `${process.env.CONSOLE_SCREENSHOT_DIR}/console-who-has-what.png` });
  }
});

t.test('who has what, and why', async (t) => {
  const all = await get('/console/admin/access');
  t.equal(all.statusCode, 200);
  const body = text(all);
  t.match(body, 'ann@example.com crm users rule everyone (users matching active eq true)');
  t.match(body, `ben@example.com wiki readers granted directly by ${tokenActor} on`);
  t.match(body, 'wiki -editors, &quot;beta&quot; access request for wiki-editors by =2+3@example.com, approved by ann@example.com; justification: needs to fix &quot;docs&quot;, today');
  t.match(body, 'ann@example.com wiki readers found in the target by reconciliation (reconcile:run-1,', 'a membership with no grant, and what found it');

  const wiki = rowsText(await get('/console/admin/access?connector=wiki'));
  t.notMatch(wiki, 'crm users', 'connector filter');
  t.match(wiki, 'wiki readers');
  const users = rowsText(await get('/console/admin/access?entitlement=crm%2Fusers'));
  t.notMatch(users, 'wiki');
  t.match(users, 'ben@example.com crm users');
  const bensPage = await get(`/console/admin/access?user=${ben}`);
  const bens = rowsText(bensPage);
  t.notMatch(bens, 'ann@example.com crm', 'user filter (by id)');
  t.match(bens, 'ben@example.com wiki readers');
  const none = await get('/console/admin/access?user=ben%40example.com&connector=crm&entitlement=wiki%2Freaders');
  t.match(text(none), 'Nobody holds anything matching these filters');
  const unknown = await get('/console/admin/access?user=nobody%40example.com');
  t.equal(unknown.statusCode, 404);
  t.match(text(unknown), 'There is no user “nobody@example.com”');
  t.match(all.body, 'href="/console/admin/access.csv"');
  t.match(bensPage.body, `href="/console/admin/access.csv?user=${ben}"`, 'the export keeps the filters');

  const csv = await get('/console/admin/access.csv');
  t.equal(csv.statusCode, 200);
  t.match(csv.headers['content-type'], 'text/csv');
  t.match(csv.headers['content-disposition'], 'attachment; filename="who-has-what.csv"');
  const lines = csv.body.split('\r\n');
  t.equal(lines[0], 'userName,userId,connector,entitlement,reason,why,approvers,validFrom,validUntil,applied');
  t.equal(lines.at(-1), '', 'CRLF after every record');
  const requested = lines.find((l) => l.includes(`request:${request}`))!;
  t.ok(requested.startsWith(`'=2+3@example.com,${evil},wiki,"'-editors, ""beta""",request:${request},`), 'formula cells get a quote; commas and quotes are quoted');
  t.match(requested, `"access request for wiki-editors by =2+3@example.com, approved by ann@example.com; justification: needs to fix ""docs"", today",ann@example.com,`);
  const reconciled = lines.find((l) => l.startsWith(`ann@example.com,${ann},wiki,readers,reconcile,`));
  t.ok(reconciled, 'the membership without a grant is in the export');
  t.ok(reconciled!.endsWith(',yes'), 'applied');
  const filtered = await get('/console/admin/access.csv?connector=crm');
  t.equal(filtered.body.split('\r\n').filter((l) => l.includes(',crm,')).length, 2, 'the export follows the filters');
  t.notMatch(filtered.body, ',wiki,');
});

t.test('audit log: filters, paging, and the chain verification', async (t) => {
  const newest = await get('/console/admin/audit');
  t.equal(newest.statusCode, 200);
  t.match(newest.body, 'rel="next">Older events</a>', 'more than a page');
  const older = /href="(\/console\/admin\/audit\?beforeId=\d+)" rel="next"/.exec(newest.body)![1]!;
  const next = await get(older);
  t.equal(next.statusCode, 200);
  t.match(next.body, '>Newest events</a>');

  const created = await get('/console/admin/audit?action=user.created');
  t.equal((created.body.match(/<td>user\.created<\/td>/g) ?? []).length, 50, 'by action, 50 a page');
  t.notMatch(created.body, '<td>group.created</td>');
  const reconcile = await get('/console/admin/audit?actor=reconcile%3Arun-1');
  t.match(reconcile.body, '<td>account.membershipFound</td>', 'by actor');
  t.equal((reconcile.body.match(/<tr><td>\d+<\/td>/g) ?? []).length, 1);
  const grants = await get('/console/admin/audit?resourceType=Grant');
  t.match(grants.body, '<td>grant.created</td>', 'by resource type');
  t.notMatch(grants.body, '<td>user.created</td>');
  const aboutAnn = await get(`/console/admin/audit?userId=${ann}`);
  t.match(aboutAnn.body, '<td>account.membershipFound</td>', 'everything concerning a user');
  t.notMatch(aboutAnn.body, `<code>${ben}</code>`);
  const future = await get('/console/admin/audit?since=2999-01-01');
  t.match(text(future), 'No event matches these filters', 'by time: an empty range says what to do');
  const past = await get('/console/admin/audit?until=2000-01-01T00:00:00Z');
  t.match(text(past), 'No event matches these filters');
  const bad = await get('/console/admin/audit?since=yesterday');
  t.equal(bad.statusCode, 400);
  t.match(text(bad), 'since: expected an ISO 8601 date or date-time with a zone');
  t.match(bad.body, 'value="yesterday"', 'the form keeps what was typed');

  const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_events');
  const intact = await get('/console/admin/audit/verify');
  t.equal(intact.statusCode, 200);
  t.match(text(intact), `The chain is intact. ${rows[0]!.n} events checked.`);
  t.match(text(intact), 'Record this hash outside the database');

  const { rows: victim } = await db.query<{ id: string }>(`SELECT id FROM audit_events WHERE action = 'grant.created' ORDER BY id LIMIT 1`);
  const c = await db.connect();
  try {
    await c.query('BEGIN');
    await c.query('SET LOCAL session_replication_role = replica');
    await c.query(`UPDATE audit_events SET actor = 'someone else' WHERE id = $1`, [victim[0]!.id]);
    await c.query('COMMIT');
  } finally {
    c.release();
  }
  const broken = await get('/console/admin/audit/verify');
  t.match(text(broken), 'The chain is broken. the event does not match its hash: its content was altered.');
  t.match(text(broken), `the first bad event is ${victim[0]!.id}`);
});
