/**
 * The console's administrators' operations pages over HTTP (app.inject with session cookies), on
 * PostgreSQL and the Temporal dev server with a worker, with a connector whose target is an
 * in-memory fake: test connection (ok and failing), a dry run that reports drift and changes
 * nothing (its page refreshes while it runs, and links the run in the Temporal UI), reconcile now
 * that fixes it, tokens created (shown once, usable against the API), rotated and revoked; a
 * non-administrator gets 403 everywhere and a form without its CSRF token gets 403.
 */
import { fileURLToPath } from 'node:url';
import Fastify, { type LightMyRequestResponse } from 'fastify';
import t from 'tap';
import type { Worker } from '@temporalio/worker';
import { userBody } from '../../helpers/gateway.js';
import { eventually } from '../../helpers/temporal.js';
import { startTestStack } from '../../helpers/stack.js';
import { memoryTarget } from '../../fixtures/memory-connector.js';
import { Cookies, SessionStore } from '../../../gateway/console/session.js';

const PLUGIN = fileURLToPath(new URL('../../fixtures/memory-connector.ts', import.meta.url));
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const SECRET = 'a-session-secret-of-at-least-32-characters';
const UI = 'http://temporal-ui.example:8233';

const { database, temporal, gw } = await startTestStack(t, {
  idleMs: 500,
  worker: false,
  env: {
    // An identity provider is configured (never contacted: sessions are started below), so
    // administrators are the members of CONSOLE_ADMIN_GROUP only.
    CONSOLE_OIDC_ISSUER: 'https://idp.example.com',
    CONSOLE_OIDC_CLIENT_ID: 'console',
    CONSOLE_OIDC_CLIENT_SECRET: 'client-secret-value',
    CONSOLE_SESSION_SECRET: SECRET,
    CONSOLE_ADMIN_GROUP: 'Gateway admins',
    TEMPORAL_UI_URL: UI,
  },
});
let worker: Worker = await temporal.startWorker(database.newPool());
const ns = `adminops-${temporal.taskQueue}`;
const target = memoryTarget(ns);
const api = gw.call;

// The people: ada administers (member of "Gateway admins"), nat does not; carl is provisioned.
const ada = (await api('POST', '/scim/v2/Users', userBody('ada@example.com'), 201)).id as string;
const nat = (await api('POST', '/scim/v2/Users', userBody('nat@example.com'), 201)).id as string;
const carl = (await api('POST', '/scim/v2/Users', userBody('carl<i>@example.com'), 201)).id as string;
await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Gateway admins', members: [{ value: ada }] }, 201);

/**
 * A console session of `userId` as the sign-in callback makes it (SessionStore.start, the same
 * secret as the gateway's), with its CSRF token read from a page.
 */
const sessions = new SessionStore(database.db, new Cookies(SECRET), 3600, false, 'Gateway admins');
const signer = Fastify();
signer.post<{ Params: { id: string } }>('/:id', async (request, reply) => {
  await sessions.start(request, reply, request.params.id, 'oidc');
  return 'ok';
});
t.teardown(() => signer.close());

interface Session {
  cookie: string;
  csrf: string;
}

async function signIn(userId: string): Promise<Session> {
  const res = await signer.inject({ method: 'POST', url: `/${userId}` });
  const cookie = res.cookies.find((c) => c.name === 'console_session')!.value;
  const page = await gw.app.inject({ url: '/console/requests', cookies: { console_session: cookie } });
  const csrf = /action="\/console\/logout"><input type="hidden" name="_csrf" value="([^"]+)"/.exec(page.body)![1]!;
  return { cookie, csrf };
}

const admin = await signIn(ada);
const other = await signIn(nat);

function get(who: Session | undefined, url: string): Promise<LightMyRequestResponse> {
  return gw.app.inject({ url, ...(who ? { cookies: { console_session: who.cookie } } : {}) });
}

/** A form POST; the session's CSRF token is added unless `csrf` is false. */
function post(who: Session | undefined, url: string, fields: Record<string, string> = {}, csrf = true): Promise<LightMyRequestResponse> {
  return gw.app.inject({
    method: 'POST',
    url,
    payload: new URLSearchParams({ ...(who && csrf ? { _csrf: who.csrf } : {}), ...fields }).toString(),
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    ...(who ? { cookies: { console_session: who.cookie } } : {}),
  });
}

const snapshot = () => JSON.stringify([...target.groups.entries()].map(([k, v]) => [k, [...v].sort()]).sort());

t.test('connectors: empty state, list, test connection ok and failing', async (t) => {
  const empty = await get(admin, '/console/admin/connectors');
  t.equal(empty.statusCode, 200);
  t.match(empty.body, 'No connectors are configured yet', 'the empty page says what to do next');
  t.match(empty.body, '<a href="/console/admin/connectors">Connectors</a>', "the administrators' navigation");
  t.match(empty.body, '<a href="/console/admin/tokens">API tokens</a>');

  await api('PUT', '/api/connectors/mem', { id: 'mem', type: PLUGIN, config: { namespace: ns } });
  await api('POST', '/api/entitlements', { connectorId: 'mem', name: 'eng', target: { group: 'eng' }, membership: 'authoritative' }, 201);
  await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Eng', members: [{ value: carl }] }, 201);
  await api('POST', '/api/rules', { name: 'eng', group: 'Eng', entitlements: ['mem/eng'] }, 201);
  await eventually(async () => target.groups.get('eng')?.has(`acct-${carl}`), 60_000, 'carl provisioned into eng');

  const list = await get(admin, '/console/admin/connectors');
  t.equal(list.statusCode, 200);
  t.match(list.body, '<h2 id="c-mem">mem</h2>');
  t.match(list.body, PLUGIN, 'the type');
  t.match(list.body, 'data-state="enabled"', 'the state');
  t.match(list.body, 'enforce mode');
  t.match(list.body, '<dt>Accounts</dt><dd>1 active</dd>', "carl's account");
  t.match(list.body, /Last reconciliation<\/dt><dd>never/);
  t.notMatch(list.body, ns, 'configuration is not shown');

  const ok = await post(admin, '/console/admin/connectors/mem/test');
  t.equal(ok.statusCode, 200);
  t.match(ok.body, 'data-result="ok"');
  t.match(ok.body, 'Connection works.');

  target.failures.set('validate', [{ kind: 'permanent', message: 'bad credentials' }]);
  const failed = await post(admin, '/console/admin/connectors/mem/test');
  t.equal(failed.statusCode, 200, 'the test ran: its page says how it went');
  t.match(failed.body, 'data-result="failed"');
  t.match(failed.body, 'memory: validate failed: HTTP 403: bad credentials', "the connector's own words");
  t.match(failed.body, 'Fix the connector’s configuration', 'a permanent failure says what to do next');

  const missing = await post(admin, '/console/admin/connectors/nope/test');
  t.equal(missing.statusCode, 404);
  t.match(missing.body, 'There is no connector');
});

t.test('drift: a dry run reports it without changing the target, reconcile now fixes it', async (t) => {
  const never = await get(admin, '/console/admin/connectors/mem/drift');
  t.equal(never.statusCode, 200);
  t.match(never.body, 'has not been reconciled yet. Start a dry run', 'the empty state says what to do next');

  target.groups.get('eng')!.delete(`acct-${carl}`); // a membership missing in the target
  target.groups.get('eng')!.add('acct-stranger'); // one nobody granted
  const before = snapshot();

  // With no worker the run cannot progress: its page says it is running and refreshes itself.
  worker.shutdown();
  await eventually(async () => worker.getState() === 'STOPPED', 60_000, 'the worker to stop');
  const started = await post(admin, '/console/admin/connectors/mem/reconcile', { run: 'dry-run' });
  t.equal(started.statusCode, 303);
  const runUrl = started.headers.location as string;
  t.match(runUrl, /^\/console\/admin\/connectors\/mem\/runs\/[0-9a-f-]{36}$/);
  const runId = runUrl.split('/').pop()!;
  const running = await get(admin, runUrl);
  t.equal(running.statusCode, 200);
  t.match(running.body, 'data-run="running"');
  t.equal(running.headers.refresh, '3', 'the page reloads itself while the run goes on');
  t.match(running.body, 'Dry run (report only)');
  t.match(running.body, `href="${UI}/namespaces/default/workflows/reconcile%3Amem/${runId}/history"`, 'a link to the run in the Temporal UI');
  const busy = await post(admin, '/console/admin/connectors/mem/reconcile', { run: 'enforce' });
  t.equal(busy.statusCode, 409);
  t.match(busy.body, 'is already running');

  worker = await temporal.startWorker(database.newPool());
  const done = await eventually(async () => {
    const res = await get(admin, runUrl);
    return res.body.includes('data-run="running"') ? undefined : res;
  }, 60_000, 'the dry run to finish');
  t.match(done.body, 'data-run="completed"');
  t.notOk(done.headers.refresh, 'a finished run is not reloaded');
  t.match(done.body, '2 differences found, nothing changed (dry run)');
  t.match(done.body, 'data-kind="missingMembership" data-action="reported"');
  t.match(done.body, 'data-kind="unexpectedMembership" data-action="reported"');
  t.match(done.body, 'carl&lt;i&gt;@example.com lacks mem/eng', 'names are escaped');
  t.notMatch(done.body, 'carl<i>');
  t.equal(snapshot(), before, 'the dry run changed nothing in the target');

  const drift = await get(admin, '/console/admin/connectors/mem/drift');
  t.equal(drift.statusCode, 200);
  t.match(drift.body, 'dry run (report only)');
  t.match(drift.body, /<dt>Differences<\/dt><dd>2<\/dd>/);
  t.match(drift.body, 'holds mem/eng in mem without our granting it');
  t.match(drift.body, 'nothing (dry run)');

  const now = await post(admin, '/console/admin/connectors/mem/reconcile', { run: 'enforce' });
  t.equal(now.statusCode, 303);
  const fixed = await eventually(async () => {
    const res = await get(admin, now.headers.location as string);
    return res.body.includes('data-run="running"') ? undefined : res;
  }, 60_000, 'the reconciliation to finish');
  t.match(fixed.body, 'data-run="completed"');
  t.match(fixed.body, 'Reconcile now');
  t.match(fixed.body, 'data-kind="missingMembership" data-action="fixed"');
  t.match(fixed.body, 'data-kind="unexpectedMembership" data-action="fixed"');
  await eventually(async () => target.groups.get('eng')?.has(`acct-${carl}`) && !target.groups.get('eng')?.has('acct-stranger'), 60_000, 'the target to be fixed');

  const unknownRun = await get(admin, '/console/admin/connectors/mem/runs/00000000-0000-4000-8000-000000000000');
  t.equal(unknownRun.statusCode, 404);
  t.equal((await get(admin, '/console/admin/connectors/mem/runs/not-a-run')).statusCode, 404);
  t.equal((await post(admin, '/console/admin/connectors/mem/reconcile', { run: 'everything' })).statusCode, 400);
  t.equal((await get(admin, '/console/admin/connectors/nope/drift')).statusCode, 404);
});

t.test('tokens: create (shown once, usable), rotate (the old one stops), revoke', async (t) => {
  const page = await get(admin, '/console/admin/tokens');
  t.equal(page.statusCode, 200);
  t.match(page.body, 'Create a token');
  t.match(page.body, 'name="scope.admin"');

  const created = await post(admin, '/console/admin/tokens', { name: 'ci', 'scope.scim:read': 'on', 'scope.admin': 'on' });
  t.equal(created.statusCode, 200);
  t.equal(created.headers['cache-control'], 'no-store', 'the page with the secret is not stored');
  const first = /value="(scimgw_[^"]+)" data-token/.exec(created.body)![1]!;
  t.match(created.body, 'shown only this once');
  t.equal((await gw.scim({ url: '/api/tokens', token: first })).statusCode, 200, 'the new token works against the admin API');
  t.equal((await gw.scim({ url: '/scim/v2/Users', token: first })).statusCode, 200, 'and SCIM reads');

  const listed = await get(admin, '/console/admin/tokens');
  t.match(listed.body, 'data-token-name="ci"');
  t.match(listed.body, 'scim:read, admin');
  t.notMatch(listed.body, first, 'the secret is never listed');
  const { rows: hashes } = await database.db.query<{ token_hash: Buffer }>("SELECT token_hash FROM api_tokens WHERE name = 'ci'");
  t.notMatch(listed.body, hashes[0]!.token_hash.toString('hex'), 'nor its digest');
  t.notMatch(listed.body, hashes[0]!.token_hash.toString('base64'));

  const taken = await post(admin, '/console/admin/tokens', { name: 'ci', 'scope.scim:read': 'on' });
  t.equal(taken.statusCode, 409);
  t.match(taken.body, 'Choose another name, or rotate that token');
  t.equal((await post(admin, '/console/admin/tokens', { name: 'no scopes' })).statusCode, 400, 'a name with a space is refused');
  const noScope = await post(admin, '/console/admin/tokens', { name: 'noscope' });
  t.equal(noScope.statusCode, 400);
  t.match(noScope.body, 'Choose at least one scope');
  t.equal((await post(admin, '/console/admin/tokens', { name: 'ghost', 'scope.requests': 'on', user: 'ghost@example.com' })).statusCode, 400, 'an unknown user');

  const rotated = await post(admin, '/console/admin/tokens/rotate', { name: 'ci' });
  t.equal(rotated.statusCode, 200);
  t.equal(rotated.headers['cache-control'], 'no-store');
  const second = /value="(scimgw_[^"]+)" data-token/.exec(rotated.body)![1]!;
  t.not(second, first);
  t.equal((await gw.scim({ url: '/api/tokens', token: first })).statusCode, 401, 'the rotated-out token stops working at once');
  t.equal((await gw.scim({ url: '/api/tokens', token: second })).statusCode, 200, 'the new one works');

  const revoked = await post(admin, '/console/admin/tokens/revoke', { name: 'ci' });
  t.equal(revoked.statusCode, 303);
  t.equal(revoked.headers.location, '/console/admin/tokens?revoked=ci');
  t.equal((await gw.scim({ url: '/api/tokens', token: second })).statusCode, 401, 'a revoked token stops working');
  const after = await get(admin, revoked.headers.location as string);
  t.match(after.body, 'Token ci is revoked');
  t.notMatch(after.body, 'data-token-name="ci"');
  t.equal((await post(admin, '/console/admin/tokens/revoke', { name: 'ci' })).statusCode, 404);
  t.equal((await post(admin, '/console/admin/tokens/rotate', { name: 'ci' })).statusCode, 404);

  const { rows } = await database.db.query<{ action: string; actor: string; reason: string }>("SELECT action, actor, reason FROM audit_events WHERE resource_type = 'ApiToken' AND resource_id = 'ci' ORDER BY id");
  t.same(rows, ['token.created', 'token.rotated', 'token.revoked'].map((action) => ({ action, actor: 'console:ada@example.com', reason: 'console' })), 'audited like the admin API');
});

t.test("a personal token keeps its user when rotated", async (t) => {
  const created = await post(admin, '/console/admin/tokens', { name: 'nats-portal', 'scope.requests': 'on', user: 'NAT@example.com' });
  t.equal(created.statusCode, 200);
  const listed = await get(admin, '/console/admin/tokens');
  t.match(listed.body, /data-token-name="nats-portal"><td>nats-portal<\/td><td>requests<\/td><td>nat@example.com<\/td>/);
  t.equal((await post(admin, '/console/admin/tokens/rotate', { name: 'nats-portal' })).statusCode, 200);
  const { rows } = await database.db.query<{ user_id: string | null }>("SELECT user_id FROM api_tokens WHERE name = 'nats-portal' AND revoked_at IS NULL");
  t.same(rows, [{ user_id: nat }]);
});

t.test('non-administrators get 403 on every admin URL; forms need the CSRF token', async (t) => {
  const keep = (await api('POST', '/api/tokens', { name: 'keep', scopes: ['scim:read'] }, 201)).id as string;
  const gets = ['/console/admin/connectors', '/console/admin/connectors/mem/drift', '/console/admin/connectors/mem/runs/00000000-0000-4000-8000-000000000000', '/console/admin/tokens'];
  const posts: Array<[string, Record<string, string>]> = [
    ['/console/admin/connectors/mem/test', {}],
    ['/console/admin/connectors/mem/reconcile', { run: 'enforce' }],
    ['/console/admin/tokens', { name: 'sneaky', 'scope.admin': 'on' }],
    ['/console/admin/tokens/rotate', { name: 'keep' }],
    ['/console/admin/tokens/revoke', { name: 'keep' }],
  ];
  const mine = await get(other, '/console/requests');
  t.equal(mine.statusCode, 200, "nat's session works");
  t.notMatch(mine.body, '/console/admin/', "nat's navigation has no administrators' pages");
  for (const url of gets) {
    const res = await get(other, url);
    t.equal(res.statusCode, 403, `GET ${url} by a non-administrator`);
    t.match(res.body, 'Administrators only');
    t.equal((await get(undefined, url)).statusCode, 303, `GET ${url} signed out goes to sign-in`);
  }
  const calls = target.calls.length;
  for (const [url, fields] of posts) {
    t.equal((await post(other, url, fields)).statusCode, 403, `POST ${url} by a non-administrator`);
    t.equal((await post(admin, url, fields, false)).statusCode, 403, `POST ${url} without the CSRF token`);
    t.equal((await post(admin, url, { ...fields, _csrf: other.csrf }, false)).statusCode, 403, `POST ${url} with another session's token`);
    t.equal((await post(undefined, url, fields)).statusCode, 403, `POST ${url} signed out`);
  }
  t.equal(target.calls.length, calls, 'nothing reached the target');
  const { rows } = await database.db.query<{ id: string }>("SELECT id FROM api_tokens WHERE name IN ('keep', 'sneaky') AND revoked_at IS NULL");
  t.same(rows, [{ id: keep }], 'no token was created, rotated or revoked');
  const { rows: runs } = await database.db.query<{ n: number }>("SELECT count(*)::int AS n FROM reconcile_runs WHERE connector_id = 'mem'");
  t.equal(runs[0]!.n, 2, 'no reconciliation was started');
});
