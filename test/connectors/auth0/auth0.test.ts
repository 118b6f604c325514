/**
 * The auth0 connector through the real `auth0` package (ManagementClient v7) against a stateful
 * fake tenant over HTTPS (fake-auth0.ts), trusted through a throwaway CA (test-ca.ts): the
 * contract kit, Auth0's app_metadata merge semantics, block/unblock, the invitation ticket, error
 * classification (rate limits, scopes, credentials), reconcile listings, and the shipped Action.
 */
import { createRequire } from 'node:module';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Artifact, ConnectorInstance } from '@scim-gateway/connector-sdk';
import type { Test } from 'tap';
import { underTestCa } from './test-ca.js';

const tls = await underTestCa(import.meta.url);
const { default: t } = await import('tap');
const { startFakeAuth0, ALL_SCOPES } = await import('./fake-auth0.js');
const { auth0Connector } = await import('../../../connectors/auth0/index.js');
const { FLAG_KEY, INVITATION_KEY } = await import('../../../connectors/auth0/user.js');
const { instantiate, validateConfig } = await import('@scim-gateway/connector-sdk/registry');
const { createSecretResolver } = await import('@scim-gateway/connector-sdk');
const { runContractKit, sampleUser, collectPages, seedThroughConnector } = await import('@scim-gateway/connector-sdk/kit');
const { PermanentError, TransientError } = await import('@scim-gateway/connector-sdk');

type PostLogin = (event: unknown, api: unknown) => Promise<void>;
const action = createRequire(import.meta.url)('../../../connectors/auth0/actions/deny-deprovisioned.js') as { onExecutePostLogin: PostLogin };

const SECRET = 'fake-client-secret-0123456789abcdef';
const CONNECTION = 'Username-Password-Authentication';
const fake = await startFakeAuth0({ cert: tls.cert, key: tls.key });
t.teardown(() => fake.close());
fake.connections.add(CONNECTION);
fake.connections.add('Other-Database');
fake.clients.set('gateway-app', { secret: SECRET, scopes: ALL_SCOPES });
fake.clients.set('read-only-app', { secret: SECRET, scopes: ['read:users', 'read:roles'] });

const env = { AUTH0_SECRET: SECRET, WRONG_SECRET: 'not-the-secret-at-all-000000' };
const logLines: string[] = [];
const log = { info: (m: string, f?: Record<string, unknown>) => logLines.push(JSON.stringify([m, f])), warn: (m: string, f?: Record<string, unknown>) => logLines.push(JSON.stringify([m, f])) };
const delivered: Artifact[] = [];

function connector(config: Record<string, unknown> = {}, opts: { deliver?: boolean } = {}): ConnectorInstance {
  return instantiate(
    auth0Connector,
    { domain: fake.domain, clientId: 'gateway-app', clientSecret: 'env:AUTH0_SECRET', connection: CONNECTION, pageSize: 2, ...config },
    {
      secret: createSecretResolver(env),
      log,
      ...(opts.deliver !== false && {
        deliver: async (artifact: Artifact) => {
          delivered.push(artifact);
          return { url: 'https://gateway.test/downloads/x', expiresAt: new Date(Date.now() + 60_000).toISOString() };
        },
      }),
    },
  );
}

async function thrown(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a failure');
}

const requestsTo = (method: string, path: string | RegExp) => fake.requests.filter((r) => r.method === method && (typeof path === 'string' ? r.path === path : path.test(r.path))).length;

// Others in the tenant: users of the connection the gateway does not manage, one in another connection, role holders.
const portal = fake.addRole('Customers-Portal');
for (let i = 0; i < 3; i++) portal.users.add(fake.addUser({ email: `someone.${i}@example.com`, connection: CONNECTION }).user_id);
fake.addUser({ email: 'elsewhere@example.com', connection: 'Other-Database' });

t.test('configuration is checked: secrets by reference only, one ticket destination', async (t) => {
  t.throws(() => validateConfig(auth0Connector, { domain: fake.domain, clientId: 'x', clientSecret: 'plain-secret', connection: CONNECTION }), /clientSecret/);
  t.throws(() => validateConfig(auth0Connector, { domain: 'https://acme.auth0.com', clientId: 'x', clientSecret: 'env:A', connection: CONNECTION }), /domain/, 'a scheme in domain is refused');
  t.throws(() => validateConfig(auth0Connector, { domain: fake.domain, clientId: 'x', clientSecret: 'env:A', connection: 'bad name' }), /connection/);
  t.throws(() => validateConfig(auth0Connector, { domain: fake.domain, clientId: 'x', clientSecret: 'env:A', connection: CONNECTION, retries: 3 }), /retries/, 'unknown keys are refused');
  t.throws(() => connector({ ticketClientId: 'abc', ticketResultUrl: 'https://app.example.com/' }), /either ticketClientId or ticketResultUrl/);
});

t.test('contract kit', async (t) => {
  await runContractKit({
    test: t.test.bind(t),
    definition: auth0Connector,
    connect: () => connector(),
    entitlement: { id: 'e-portal', target: { role: 'Customers-Portal' } },
    ...seedThroughConnector(() => connector(), 5),
    // A blocked Auth0 user keeps its roles; the engine revokes recorded grants before it blocks.
    disableKeepsGrants: true,
  });
  t.ok(fake.tokensIssued() >= 1, 'a client-credentials token was issued');
  const mark = fake.tokensIssued();
  const c = connector();
  await c.validate();
  await collectPages((cursor) => c.listAccounts!(cursor));
  t.equal(fake.tokensIssued() - mark, 1, 'one token is reused for every call of an instance');
});

t.test('roles by id as well as by name; a missing role is a clear permanent error', async (t) => {
  const c = connector();
  const created = await c.createAccount!(sampleUser('roleid'));
  t.equal((await c.grant!(created.remoteId!, { id: 'e1', target: { role: portal.id } })).status, 'applied');
  t.equal((await c.grant!(created.remoteId!, { id: 'e1', target: { role: 'Customers-Portal' } })).status, 'alreadyApplied', 'the name resolves to the same role');
  t.ok(portal.users.has(created.remoteId!));
  const missing = await thrown(c.grant!(created.remoteId!, { id: 'e2', target: { role: 'No-Such-Role' } }));
  t.ok(missing instanceof PermanentError && missing.kind === 'notFound', 'notFound');
  t.match(missing.message, 'role "No-Such-Role" does not exist');
  t.equal((await c.revoke!(created.remoteId!, { id: 'e2', target: { role: 'No-Such-Role' } })).status, 'alreadyApplied', 'nobody holds a role that does not exist');
  const invalid = await thrown(c.grant!(created.remoteId!, { id: 'e3', target: { group: 'x' } }));
  t.ok(invalid instanceof PermanentError && invalid.kind === 'invalidEntitlement');
});

t.test('listGrants pages through the role users with checkpoint cursors', async (t) => {
  const holders = await collectPages((cursor) => connector().listGrants!({ id: 'e', target: { role: 'Customers-Portal' } }, cursor));
  t.same([...holders].sort(), [...portal.users].sort(), 'every holder, over several pages of 2');
  t.ok(fake.requests.filter((r) => r.path === `/api/v2/roles/${portal.id}/users` && r.query.get('from')).length >= 1, 'later pages asked with from=<next>');
});

t.test('deprovisioning blocks and flags in app_metadata without wiping other keys; reactivation clears the flag with null', async (t) => {
  const c = connector();
  const user = sampleUser('merge');
  const { remoteId } = await c.createAccount!(user);
  const record = fake.users.get(remoteId!)!;
  record.app_metadata = { ...record.app_metadata, plan: 'gold' };
  t.same(record.identities.map((i) => i.connection), [CONNECTION], 'created in the configured connection');

  t.equal((await c.disableAccount!(remoteId!)).status, 'applied');
  const patch = fake.requests.filter((r) => r.method === 'PATCH' && r.path === `/api/v2/users/${encodeURIComponent(remoteId!)}`).at(-1)!;
  t.same(Object.keys((patch.body as { app_metadata: object }).app_metadata), [FLAG_KEY], 'only the flag key is sent: Auth0 merges the top level');
  t.equal(record.blocked, true, 'blocked');
  t.match(record.app_metadata[FLAG_KEY], { deprovisioned: true, source: 'scim-gateway', connection: CONNECTION }, 'the flag says who and where');
  t.ok(!Number.isNaN(Date.parse(String((record.app_metadata[FLAG_KEY] as { at: string }).at))), 'and when');
  t.equal(record.app_metadata.plan, 'gold', 'other app_metadata keys are kept');
  const listed = (await collectPages((cursor) => c.listAccounts!(cursor))).find((a) => a.remoteId === remoteId);
  t.equal(listed?.active, false, 'listed as inactive');
  t.equal(listed?.attributes?.blockedByGateway, true);

  t.equal((await c.updateAccount!(remoteId!, user)).status, 'applied', 'an active user blocked by us is unblocked');
  const unblock = fake.requests.filter((r) => r.method === 'PATCH').at(-1)!;
  t.same((unblock.body as { app_metadata: object }).app_metadata, { [FLAG_KEY]: null }, 'the flag is removed with null');
  t.equal(record.blocked, false);
  t.notOk(FLAG_KEY in record.app_metadata, 'the flag is gone');
  t.equal(record.app_metadata.plan, 'gold', 'other keys survive the removal');
  t.equal((await c.updateAccount!(remoteId!, user)).status, 'alreadyApplied');

  // Blocked by an administrator, not by us: the connector does not lift someone else's block.
  record.blocked = true;
  t.equal((await c.updateAccount!(remoteId!, user)).status, 'alreadyApplied', 'an administrator\'s block is left alone');
  t.equal((await c.createAccount!(user)).status, 'alreadyApplied');
  t.equal(record.blocked, true);
  t.equal((await c.disableAccount!(remoteId!)).status, 'alreadyApplied', 'already blocked');
  t.notOk(FLAG_KEY in record.app_metadata, 'and not flagged as ours');
  record.blocked = false;

  // Reactivation through createAccount (the engine's path after a disable) also unblocks.
  await c.disableAccount!(remoteId!);
  t.same(await c.createAccount!(user), { status: 'applied', remoteId }, 'createAccount finds the blocked user and unblocks it');
  t.equal(record.blocked, false);
});

t.test('updateAccount maps the profile; email changes only when allowed', async (t) => {
  const c = connector();
  const user = sampleUser('profile');
  const { remoteId } = await c.createAccount!(user);
  const record = fake.users.get(remoteId!)!;
  t.equal(record.name, user.displayName);
  t.equal(record.given_name, 'Contract');
  const renamed = { ...user, givenName: 'Renamed', email: 'new.address@example.com' };
  t.equal((await c.updateAccount!(remoteId!, renamed)).status, 'applied');
  t.equal(record.given_name, 'Renamed');
  t.equal(record.email, user.email, 'the email is not changed by default');
  t.equal((await connector({ allowEmailChange: true }).updateAccount!(remoteId!, renamed)).status, 'applied');
  t.equal(record.email, 'new.address@example.com', 'with allowEmailChange it is');
  const gone = await thrown(c.updateAccount!('auth0|nobody', user));
  t.ok(gone instanceof PermanentError && gone.kind === 'notFound');
  const noEmail = await thrown(c.createAccount!({ ...user, userName: 'no-email', email: undefined }));
  t.ok(noEmail instanceof PermanentError && noEmail.kind === 'invalidInput', 'a user without email cannot be created');
});

t.test('a created user gets a password-change ticket; its URL and the password reach no log', async (t) => {
  delivered.length = 0;
  const c = connector({ ticketTtlSeconds: 86_400, ticketClientId: 'portal-app' });
  const user = sampleUser('ticket');
  const { remoteId } = await c.createAccount!(user);
  const tickets = fake.tickets.filter((tk) => tk.user_id === remoteId);
  t.equal(tickets.length, 1, 'one ticket');
  t.match(tickets[0], { ttl_sec: 86_400, mark_email_as_verified: true, client_id: 'portal-app' });
  t.equal(delivered.length, 1, 'handed to the delivery channel');
  t.equal(delivered[0]!.userId, user.userId);
  t.ok(String(delivered[0]!.content).includes(tickets[0]!.url.replace(/&/g, '&amp;')), 'the delivered page links the ticket');
  t.equal(delivered[0]!.ttlMs, 86_400_000, 'no longer than the ticket lives');
  const record = fake.users.get(remoteId!)!;
  t.equal(record.email_verified, false, 'email_verified as configured');
  t.notOk(INVITATION_KEY in record.app_metadata, 'the pending-invitation mark is cleared');
  const password = fake.passwords.get(remoteId!)!;
  t.ok(password.length >= 40, 'a long random password was set');
  t.equal((await c.createAccount!(user)).status, 'alreadyApplied');
  t.equal(fake.tickets.filter((tk) => tk.user_id === remoteId).length, 1, 'no second ticket for an existing user');

  const withoutChannel = connector({}, { deliver: false });
  const other = await withoutChannel.createAccount!(sampleUser('nochannel'));
  t.equal(fake.tickets.filter((tk) => tk.user_id === other.remoteId).length, 1, 'the ticket is issued without a delivery channel too');
  t.ok(logLines.some((l) => l.includes('no delivery channel')), 'and the missing channel is reported');
  const none = connector({ invitation: 'none' });
  const quiet = await none.createAccount!(sampleUser('noinvite'));
  t.equal(fake.tickets.filter((tk) => tk.user_id === quiet.remoteId).length, 0, 'invitation "none" issues no ticket');

  // The ticket request fails after the user was created: the retry finds the user and invites it then.
  fake.fail({ method: 'POST', path: /^\/api\/v2\/tickets\/password-change$/, status: 503 });
  const late = sampleUser('late');
  t.ok((await thrown(c.createAccount!(late))) instanceof TransientError, 'the failed ticket is transient');
  const retried = await c.createAccount!(late);
  t.equal(retried.status, 'applied', 'the retry still has work to do');
  t.equal(fake.tickets.filter((tk) => tk.user_id === retried.remoteId).length, 1, 'and issues the ticket');

  const all = logLines.join('\n');
  for (const tk of fake.tickets) t.notOk(all.includes(tk.url) || all.includes(tk.url.split('ticket=')[1]!.replace('#', '')), 'no ticket URL in the logs');
  for (const pw of fake.passwords.values()) t.notOk(all.includes(pw), 'no password in the logs');
  t.notOk(all.includes(SECRET), 'no client secret in the logs');
});

t.test('rate limits and server errors are transient with the wait Auth0 asks for, and never retried by the client', async (t) => {
  const c = connector();
  await c.validate();
  const reset = Math.floor(Date.now() / 1000) + 30;
  fake.fail({ method: 'GET', path: /^\/api\/v2\/users-by-email$/, status: 429, message: 'Global limit has been reached', errorCode: 'too_many_requests', headers: { 'x-ratelimit-limit': '50', 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(reset) } });
  const before = requestsTo('GET', '/api/v2/users-by-email');
  const limited = await thrown(c.createAccount!(sampleUser('limited')));
  t.ok(limited instanceof TransientError, 'TransientError');
  const wait = (limited as InstanceType<typeof TransientError>).retryAfterMs;
  t.ok(wait !== undefined && wait > 20_000 && wait <= 31_000, `retryAfterMs from x-ratelimit-reset (${wait})`);
  t.match(limited.message, 'HTTP 429: too_many_requests: Global limit has been reached');
  t.equal(requestsTo('GET', '/api/v2/users-by-email') - before, 1, 'exactly one request: the package does not retry behind the engine');

  fake.fail({ method: 'GET', path: /^\/api\/v2\/users$/, status: 429, headers: { 'retry-after': '7', 'x-ratelimit-reset': String(reset) } });
  const retryAfter = await thrown(c.listAccounts!());
  t.equal((retryAfter as InstanceType<typeof TransientError>).retryAfterMs, 7000, 'Retry-After wins when present');

  fake.fail({ method: 'GET', path: /^\/api\/v2\/users\//, status: 503, message: 'Service Unavailable' });
  const before5xx = fake.requests.length;
  const unavailable = await thrown(c.disableAccount!('auth0|whatever'));
  t.ok(unavailable instanceof TransientError, '5xx is transient');
  t.equal(fake.requests.length - before5xx, 1, 'one request');

  fake.fail({ path: /^\/oauth\/token$/, status: 500 });
  const fresh = connector();
  t.ok((await thrown(fresh.validate())) instanceof TransientError, 'a failing token endpoint is transient');
});

t.test('credentials and scopes: permanent errors with reasons, never with the secret', async (t) => {
  const fake2 = await startFakeAuth0({ cert: tls.cert, key: tls.key });
  t.teardown(() => fake2.close());
  fake2.connections.add(CONNECTION);
  fake2.clients.set('gateway-app', { secret: SECRET, scopes: ALL_SCOPES });
  fake2.clients.set('read-only-app', { secret: SECRET, scopes: ['read:users', 'read:roles'] });
  const make = (config: Record<string, unknown>) =>
    instantiate(auth0Connector, { domain: fake2.domain, clientId: 'gateway-app', clientSecret: 'env:AUTH0_SECRET', connection: CONNECTION, ...config }, { secret: createSecretResolver(env), log });

  const wrongSecret = await thrown(make({ clientSecret: 'env:WRONG_SECRET' }).validate());
  t.ok(wrongSecret instanceof PermanentError && wrongSecret.kind === 'unauthorized', 'a wrong secret is unauthorized');
  t.match(wrongSecret.message, /token request .*HTTP 401: access_denied: Unauthorized; check clientId and clientSecret/);
  t.notOk(wrongSecret.message.includes(env.WRONG_SECRET), 'the secret is not in the message');

  const wrongAudience = await thrown(make({ audience: 'https://other.example.com/api/v2/' }).validate());
  t.ok(wrongAudience instanceof PermanentError && wrongAudience.kind === 'forbidden', 'a wrong audience is forbidden');
  t.match(wrongAudience.message, 'Service not found');

  const readOnly = make({ clientId: 'read-only-app' });
  await t.resolves(readOnly.validate(), 'validate needs read:users only');
  const scope = await thrown(readOnly.createAccount!(sampleUser('scope')));
  t.ok(scope instanceof PermanentError && scope.kind === 'forbidden', 'insufficient scope is forbidden');
  t.match(scope.message, /HTTP 403: insufficient_scope: Insufficient scope, expected all of: create:users; grant the missing scope/);
  t.equal(fake2.users.size, 0, 'nothing was created');

  // A token the tenant no longer accepts is refused once, then replaced by a new one.
  const c = make({});
  await c.validate();
  const issued = fake2.tokensIssued();
  fake2.fail({ method: 'GET', path: /^\/api\/v2\/users$/, status: 401, message: 'Invalid token' });
  const refused = await thrown(c.validate());
  t.ok(refused instanceof PermanentError && refused.kind === 'unauthorized');
  await c.validate();
  t.equal(fake2.tokensIssued(), issued + 1, 'a refused token is not used again');

  const closed = createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const closedPort = (closed.address() as AddressInfo).port;
  await new Promise((resolve) => closed.close(resolve));
  const unreachable = await thrown(
    instantiate(auth0Connector, { domain: `127.0.0.1:${closedPort}`, clientId: 'gateway-app', clientSecret: 'env:AUTH0_SECRET', connection: CONNECTION }, { secret: createSecretResolver(env), log }).validate(),
  );
  t.ok(unreachable instanceof TransientError, 'an unreachable tenant is transient');
  t.match(unreachable.message, 'ECONNREFUSED');
});

/** A fake tenant of its own for a listing test, and a connector on it with `pageSize`. */
async function listingTenant(t: Test, pageSize: number) {
  const tenant = await startFakeAuth0({ cert: tls.cert, key: tls.key });
  t.teardown(() => tenant.close());
  tenant.connections.add(CONNECTION);
  tenant.connections.add('Other-Database');
  tenant.clients.set('gateway-app', { secret: SECRET, scopes: ALL_SCOPES });
  const c = instantiate(auth0Connector, { domain: tenant.domain, clientId: 'gateway-app', clientSecret: 'env:AUTH0_SECRET', connection: CONNECTION, pageSize }, { secret: createSecretResolver(env), log });
  const searches = () => tenant.requests.filter((r) => r.method === 'GET' && r.path === '/api/v2/users');
  return { tenant, c, searches };
}

const BASE = Date.parse('2024-03-01T08:00:00.000Z');
const instant = (ms: number) => new Date(BASE + ms).toISOString();

/** Counts of each remote id in a listing; every value 1 means nobody twice. */
function tally(ids: string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1);
  return counts;
}

t.test('listAccounts: 2,500 users of the connection by keyset pages, each exactly once, past the 1000-result window', async (t) => {
  const { tenant, c, searches } = await listingTenant(t, 100);
  // Groups of users created in the same millisecond, of sizes 1 to 7, with users of another
  // connection created at the same instants.
  const sizes = [1, 2, 1, 3, 1, 7, 1, 1, 4, 5, 1, 6];
  const mine: string[] = [];
  const others = new Set<string>();
  for (let ms = 0, g = 0; mine.length < 2500; ms += 13, g++) {
    for (let k = 0; k < sizes[g % sizes.length]! && mine.length < 2500; k++) {
      mine.push(tenant.addUser({ email: `u${mine.length}@example.com`, connection: CONNECTION, created_at: instant(ms) }).user_id);
    }
    if (g % 8 === 0) others.add(tenant.addUser({ email: `other${g}@example.com`, connection: 'Other-Database', created_at: instant(ms) }).user_id);
  }

  const listed = (await collectPages((cursor) => c.listAccounts!(cursor))).map((a) => a.remoteId);
  const counts = tally(listed);
  t.equal(listed.length, 2500, 'as many accounts as users in the connection');
  t.equal(counts.size, 2500, 'every one of them');
  t.ok([...counts.values()].every((n) => n === 1), 'nobody twice');
  t.ok(mine.every((id) => counts.has(id)), 'nobody lost');
  t.notOk(listed.some((id) => others.has(id)), 'nobody of the other connection');

  const sent = searches();
  t.ok(sent.every((r) => r.query.get('page') === '0' && Number(r.query.get('per_page')) <= 100), 'every search asks for page 0 of at most 100');
  t.ok(sent.every((r) => r.query.get('sort') === 'created_at:1' && r.query.get('search_engine') === 'v3'), 'in creation order, search engine v3');
  t.equal(sent[0]!.query.get('q'), `identities.connection:"${CONNECTION}"`, 'the first page is the connection from its start');
  t.match(sent[1]!.query.get('q'), /^identities\.connection:"Username-Password-Authentication" AND created_at:\["\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z" TO \*\]$/, 'later pages range inclusively from the cursor instant');
  t.ok(sent.length >= 25 && sent.length <= 30, `about one search per 100 users (${sent.length})`);

  // With pages of 7, groups of 7 fill whole pages: those are read as a whole millisecond.
  const small = await listingTenant(t, 7);
  for (const [i, id] of mine.slice(0, 600).entries()) small.tenant.addUser({ email: `s${i}@example.com`, connection: CONNECTION, created_at: tenant.users.get(id)!.created_at });
  const smallListed = (await collectPages((cursor) => small.c.listAccounts!(cursor))).map((a) => a.email!);
  t.equal(smallListed.length, 600, '600 users in pages of 7');
  t.equal(new Set(smallListed).size, 600, 'each once');
  t.ok(small.searches().some((r) => /created_at:\["[^"]+" TO "[^"]+"\]$/.test(r.query.get('q') ?? '')), 'a page all of one millisecond was followed by a search for that millisecond');
  t.ok(small.searches().some((r) => /created_at:\{"[^"]+" TO \*\]$/.test(r.query.get('q') ?? '')), 'and the next page ranged exclusively after it');

  // The fake holds the window the old offset paging ran into.
  const { ManagementClient } = await import('auth0');
  const direct = new ManagementClient({ domain: tenant.domain, clientId: 'gateway-app', clientSecret: SECRET, maxRetries: 0, logging: { silent: true } });
  const beyond = await thrown(direct.users.list({ q: `identities.connection:"${CONNECTION}"`, search_engine: 'v3', page: 10, per_page: 100, include_totals: true, sort: 'created_at:1' }));
  t.match(beyond, { statusCode: 400 }, 'offset paging past 1000 results is refused by the fake as by Auth0');
  t.match(String((beyond as { body?: unknown }).body ? JSON.stringify((beyond as { body?: unknown }).body) : beyond.message), /first 1000 records/);
});

t.test('listAccounts: users of one millisecond across a page boundary are neither lost nor duplicated', async (t) => {
  const { tenant, c, searches } = await listingTenant(t, 3);
  const add = (name: string, ms: number) => tenant.addUser({ email: `${name}@example.com`, connection: CONNECTION, created_at: instant(ms) });
  add('a', 0);
  for (const name of ['b', 'c', 'd', 'e']) add(name, 5); // four in one millisecond, more than a page
  add('f', 9);
  add('g', 9);
  add('h', 12);
  add('i', 12);
  add('j', 12); // exactly a page at the end
  tenant.addUser({ email: 'x@example.com', connection: 'Other-Database', created_at: instant(5) });

  const pages: string[][] = [];
  const cursors: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await c.listAccounts!(cursor);
    pages.push(page.items.map((a) => a.email!));
    cursor = page.next;
    if (cursor !== undefined) cursors.push(cursor);
  } while (cursor !== undefined && pages.length < 20);
  t.equal(new Set(cursors).size, cursors.length, 'the cursor never repeats');
  const listed = pages.flat();
  t.same([...listed].sort(), ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j'].map((n) => `${n}@example.com`), `each user once (${JSON.stringify(pages)})`);
  t.equal(pages[0]!.length, 3, 'the first page ends inside the millisecond of b..e');
  t.ok(pages.length <= 8, `and the listing ends (${pages.length} pages)`);

  const first = JSON.parse(Buffer.from(cursors[0]!, 'base64url').toString('utf8')) as { v: number; t: string; seen?: string[] };
  t.equal(first.t, instant(5), 'the cursor is the instant the page ended in');
  t.equal(first.seen?.length, 2, 'with the two users of that millisecond already answered');
  t.ok(searches().some((r) => r.query.get('q')?.endsWith(`created_at:["${instant(5)}" TO "${instant(5)}"]`)), 'the page all of b..e\'s millisecond was completed by a search for that millisecond');
});

t.test('listAccounts: more users in one millisecond than one answer holds fails clearly', async (t) => {
  const { tenant, c } = await listingTenant(t, 10);
  for (let i = 0; i < 101; i++) tenant.addUser({ email: `burst${i}@example.com`, connection: CONNECTION, created_at: instant(0) });
  const failed = await thrown(collectPages((cursor) => c.listAccounts!(cursor)));
  t.ok(failed instanceof PermanentError && failed.kind === 'searchLimit', `searchLimit (${failed.message})`);
  t.match(failed.message, `more than 100 users of connection "${CONNECTION}" were created in the same millisecond (${instant(0)})`);

  // One fewer fits one answer, and is listed completely.
  tenant.users.delete([...tenant.users.keys()][0]!);
  const listed = await collectPages((cursor) => c.listAccounts!(cursor));
  t.equal(new Set(listed.map((a) => a.remoteId)).size, 100, '100 users of one millisecond are listed, each once');
  t.equal(listed.length, 100);
});

t.test('listAccounts: a user created during the listing appears, a deleted one disappears, the cursor holds', async (t) => {
  const { tenant, c } = await listingTenant(t, 3);
  const users = Array.from({ length: 10 }, (_, i) => tenant.addUser({ email: `p${i}@example.com`, connection: CONNECTION, created_at: instant(i * 1000) }));
  const first = await c.listAccounts!();
  t.same(first.items.map((a) => a.email), ['p0@example.com', 'p1@example.com', 'p2@example.com']);

  // The user the cursor points at, and one further on, are deleted; someone signs up.
  tenant.users.delete(users[2]!.user_id);
  tenant.users.delete(users[6]!.user_id);
  const late = tenant.addUser({ email: 'late@example.com', connection: CONNECTION });
  const rest = await collectPages((cursor) => c.listAccounts!(cursor ?? first.next));
  const emails = rest.map((a) => a.email);
  t.same(emails, ['p3@example.com', 'p4@example.com', 'p5@example.com', 'p7@example.com', 'p8@example.com', 'p9@example.com', 'late@example.com'], 'the rest in creation order, without the deleted, with the new user');
  t.ok(rest.some((a) => a.remoteId === late.user_id));
});

t.test('listAccounts: a cursor it did not make is a PermanentError, and nothing is sent', async (t) => {
  const { c, searches } = await listingTenant(t, 3);
  const encode = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const valid = encode({ v: 1, t: instant(0), seen: ['auth0|abc'] });
  await t.resolves(c.listAccounts!(valid), 'a well-formed cursor is accepted');
  const before = searches().length;
  const tampered = [
    '3',
    'not a cursor!',
    Buffer.from('{"v":1,').toString('base64url'),
    encode([1]),
    encode({ v: 2, t: instant(0) }),
    encode({ v: 1, t: 'yesterday' }),
    encode({ v: 1, t: '2024-03-01T08:00:00Z' }),
    encode({ v: 1, t: '2024-02-30T08:00:00.000Z' }),
    encode({ v: 1, t: instant(0), seen: 'auth0|abc' }),
    encode({ v: 1, t: instant(0), seen: [7] }),
    encode({ v: 1, t: instant(0), seen: Array.from({ length: 101 }, (_, i) => `auth0|${i}`) }),
    encode({ v: 1, t: instant(0), after: false }),
    encode({ v: 1, t: instant(0), after: true, seen: [] }),
    encode({ v: 1, t: instant(0), page: 3 }),
    encode({ v: 1, t: '" TO *] OR email:*' }),
    `${valid.slice(0, -2)}!!`,
  ];
  for (const cursor of tampered) {
    const failed = await thrown(c.listAccounts!(cursor));
    t.ok(failed instanceof PermanentError && failed.kind === 'invalidCursor', `invalidCursor for ${JSON.stringify(cursor.slice(0, 30))}: ${failed.message}`);
  }
  t.equal(searches().length, before, 'no search was sent for any of them');
});

t.test('TLS is verified: a tenant whose certificate the CA did not issue is refused, permanently', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'auth0-untrusted-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await promisify(execFile)('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    '-days', '1', '-subj', '/CN=untrusted', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost']);
  const untrusted = await startFakeAuth0({ cert: await readFile(join(dir, 'cert.pem'), 'utf8'), key: await readFile(join(dir, 'key.pem'), 'utf8') });
  t.teardown(() => untrusted.close());
  untrusted.clients.set('gateway-app', { secret: SECRET, scopes: ALL_SCOPES });
  const c = instantiate(auth0Connector, { domain: untrusted.domain, clientId: 'gateway-app', clientSecret: 'env:AUTH0_SECRET', connection: CONNECTION }, { secret: createSecretResolver(env), log });
  const refused = await thrown(c.validate());
  t.ok(refused instanceof PermanentError && refused.kind === 'tlsError', `tlsError (${refused.message})`);
  t.equal(untrusted.tokensIssued(), 0, 'the secret was never sent to it');
});

t.test('the shipped Action denies flagged users and lets everyone else in', async (t) => {
  const run = async (app_metadata: unknown) => {
    const denied: string[] = [];
    const api = {
      access: {
        deny(reason: string) {
          denied.push(reason);
          return api;
        },
      },
    };
    await action.onExecutePostLogin({ user: { user_id: 'auth0|1', email: 'a@example.com', ...(app_metadata !== undefined && { app_metadata }) } }, api);
    return denied;
  };
  const flagged = await run({ plan: 'gold', [FLAG_KEY]: { deprovisioned: true, source: 'scim-gateway', at: new Date().toISOString() } });
  t.equal(flagged.length, 1, 'a flagged user is denied');
  t.match(flagged[0], /access has been removed/, 'with a reason the application can show');
  t.same(await run({ plan: 'gold' }), [], 'an unflagged user is allowed');
  t.same(await run({ plan: 'gold', [FLAG_KEY]: { deprovisioned: false } }), [], 'a cleared flag is allowed');
  t.same(await run(undefined), [], 'no app_metadata at all is allowed');
  t.same(await run({}), [], 'empty app_metadata is allowed');
});
