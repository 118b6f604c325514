import t, { type Test } from 'tap';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../../../gateway/app.js';
import { createToken } from '../../../../core/auth/tokens.js';
import { loadGatewayConfig } from '../../../../core/config.js';
import { TemporalAccess } from '../../../../gateway/temporal.js';
import { createTestDatabase, type TestDatabase } from '../../../helpers/db.js';
import { chainAllPendingAuditEvents } from '../../../../core/audit/chain.js';

/** The app as production builds it. */
async function startApp(t: Test, database: TestDatabase): Promise<FastifyInstance> {
  const config = { ...loadGatewayConfig({ LOG_LEVEL: 'silent' }), databaseUrl: database.url, temporalAddress: '127.0.0.1:1', taskQueue: 'x' };
  const temporal = new TemporalAccess('127.0.0.1:1', config.temporalNamespace, 1000);
  const app = await buildApp({ config, db: database.newPool(5), temporal, dispatchOutbox: false, logger: false });
  await app.ready();
  t.teardown(() => app.close());
  return app;
}

/** RFC 4180: fields separated by commas, records by CRLF, quoted fields may hold both. */
function parseCsv(text: string): string[][] {
  const records: string[][] = [];
  let record: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      record.push(field);
      field = '';
    } else if (c === '\r' && text[i + 1] === '\n') {
      record.push(field);
      records.push(record);
      record = [];
      field = '';
      i++;
    } else field += c;
  }
  t.equal(field + record.join(''), '', 'the CSV ends with a complete record');
  return records;
}

const database = await createTestDatabase(t);
const app = await startApp(t, database);
const { token } = await createToken(database.db, 'auditor', ['admin']);
const { token: scimToken } = await createToken(database.db, 'okta', ['scim:read', 'scim:write']);
const auth = (tok: string = token) => ({ authorization: `Bearer ${tok}` });
const get = (url: string, tok?: string) => app.inject({ url, headers: auth(tok) });

const TRICKY = 'one, "two"\nthree\r\nfour';
const INSERT = 'INSERT INTO audit_events (at, actor, action, resource_type, resource_id, reason, before, after) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)';
const seed: Array<[string, string, string, string, string | null, string | null, unknown, unknown]> = [
  ['2024-01-01T10:00:00Z', 'alice', 'user.created', 'User', 'u1', 'SCIM', null, { userName: 'a' }],
  ['2024-02-01T10:00:00Z', 'alice', 'user.patched', 'User', 'u1', 'SCIM', { userName: 'a' }, { userName: 'b' }],
  ['2024-03-01T10:00:00Z', 'bob', 'group.created', 'Group', 'g1', TRICKY, null, { displayName: 'x,y' }],
  ['2024-04-01T10:00:00Z', 'bob', 'token.revoked', 'ApiToken', 'ci', '', null, null],
  ['2024-05-01T10:00:00.123456Z', 'wf-1', 'account.create', 'Account', null, null, null, '{"big": 12345678901234567890, "n": 1.5}'],
];
for (const [at, ...rest] of seed) {
  await database.db.query(INSERT, [at, ...rest.map((v) => (v !== null && typeof v === 'object' ? JSON.stringify(v) : v))]);
}
// The hashes arrive once the app's chainer has linked the events; here, at once.
await chainAllPendingAuditEvents(database.db);

t.test('lists events in id order with their chain hashes', async (t) => {
  const res = await get('/api/audit');
  t.equal(res.statusCode, 200, res.body);
  const { events, nextAfterId } = res.json();
  t.equal(nextAfterId, null);
  t.same(events.map((e: { action: string }) => e.action), seed.map((s) => s[2]));
  t.match(events[0], { actor: 'alice', resourceType: 'User', resourceId: 'u1', reason: 'SCIM', before: null, after: { userName: 'a' }, prevHash: null, hash: /^[0-9a-f]{64}$/ });
  t.equal(events[0].at, '2024-01-01T10:00:00.000000Z');
  t.equal(events[4].at, '2024-05-01T10:00:00.123456Z', 'microseconds are kept');
  t.equal(events[2].reason, TRICKY);
  t.equal(events[3].reason, '');
  t.equal(events[4].resourceId, null);
  t.ok(events.every((e: { prevHash: string }, i: number) => i === 0 || e.prevHash === events[i - 1].hash), 'each event names the hash of the one before');
});

t.test('filters', async (t) => {
  const actions = async (query: string) => {
    const res = await get(`/api/audit?${query}`);
    t.equal(res.statusCode, 200, res.body);
    return res.json().events.map((e: { action: string }) => e.action);
  };
  t.same(await actions('actor=bob'), ['group.created', 'token.revoked']);
  t.same(await actions('action=user.patched'), ['user.patched']);
  t.same(await actions('resourceType=User&resourceId=u1'), ['user.created', 'user.patched']);
  t.same(await actions('resourceId=g1&actor=alice'), []);
  t.same(await actions('since=2024-03-01T10:00:00Z'), ['group.created', 'token.revoked', 'account.create'], 'since is inclusive');
  t.same(await actions('until=2024-03-01T10:00:00Z'), ['user.created', 'user.patched'], 'until is exclusive');
  t.same(await actions('since=2024-02-01&until=2024-04-01T12:00:00%2B01:00'), ['user.patched', 'group.created', 'token.revoked']);
  t.same(await actions('since=2024-05-01T10:00:00.123457Z'), [], 'to the microsecond');
  t.same(await actions('until=2024-04-01T11:00:00%2B01:00'), ['user.created', 'user.patched', 'group.created'], 'with an offset');
});

t.test('pages with afterId', async (t) => {
  const all = (await get('/api/audit')).json().events.map((e: { id: number }) => e.id);
  const seen: number[] = [];
  let url = '/api/audit?limit=2';
  for (let pages = 1; ; pages++) {
    const page = (await get(url)).json();
    seen.push(...page.events.map((e: { id: number }) => e.id));
    if (page.nextAfterId === null) {
      t.equal(pages, 3);
      break;
    }
    t.equal(page.nextAfterId, seen[seen.length - 1]);
    url = `/api/audit?limit=2&afterId=${page.nextAfterId}`;
  }
  t.same(seen, all);
  const filtered = (await get(`/api/audit?actor=bob&afterId=${all[2]}`)).json();
  t.same(filtered.events.map((e: { action: string }) => e.action), ['token.revoked']);
});

t.test('bad queries are 400s', async (t) => {
  for (const q of ['limit=0', 'limit=1001', 'limit=abc', 'afterId=-1', 'since=yesterday', 'until=2024-02-30', 'since=2024-01-01T10:00:00', 'colour=red']) {
    const res = await get(`/api/audit?${q}`);
    t.equal(res.statusCode, 400, q);
    t.equal(res.json().statusCode, 400);
  }
  t.equal((await get('/api/audit?limit=1000')).statusCode, 200);
  t.equal((await get('/api/audit/export?format=xml')).statusCode, 400);
  t.equal((await get('/api/audit/export?format=csv&since=nope')).statusCode, 400);
});

t.test('the export format defaults to JSON; Accept: text/csv asks for CSV; the parameter wins', async (t) => {
  const plain = await get('/api/audit/export');
  t.equal(plain.statusCode, 200, plain.body);
  t.match(plain.headers['content-type'], /^application\/json/, 'no format and no Accept: JSON');
  t.ok(Array.isArray(plain.json()), 'a JSON array');
  const anything = await app.inject({ url: '/api/audit/export', headers: { ...auth(), accept: '*/*' } });
  t.match(anything.headers['content-type'], /^application\/json/, 'Accept: */*: JSON');
  const csv = await app.inject({ url: '/api/audit/export', headers: { ...auth(), accept: 'text/csv' } });
  t.equal(csv.statusCode, 200);
  t.match(csv.headers['content-type'], /^text\/csv/, 'Accept: text/csv: CSV');
  t.match(csv.body, /^id,/, 'with its header row');
  const preferred = await app.inject({ url: '/api/audit/export', headers: { ...auth(), accept: 'application/json;q=0.5, text/csv' } });
  t.match(preferred.headers['content-type'], /^text\/csv/, 'the higher quality wins');
  const explicit = await app.inject({ url: '/api/audit/export?format=json', headers: { ...auth(), accept: 'text/csv' } });
  t.match(explicit.headers['content-type'], /^application\/json/, 'format= overrides Accept');
});

t.test('CSV export: a header row, and fields that round-trip', async (t) => {
  const res = await get('/api/audit/export?format=csv');
  t.equal(res.statusCode, 200);
  t.equal(res.headers['content-type'], 'text/csv; charset=utf-8');
  t.match(res.headers['content-disposition'], /attachment; filename="audit-events.csv"/);
  const [header, ...rows] = parseCsv(res.body);
  t.same(header, ['id', 'at', 'actor', 'action', 'resourceType', 'resourceId', 'reason', 'before', 'after', 'prevHash', 'hash']);
  const listed = (await get('/api/audit')).json().events;
  t.equal(rows.length, listed.length);
  rows.forEach((row, i) => {
    const e = listed[i];
    t.same(row.slice(0, 7), [String(e.id), e.at, e.actor, e.action, e.resourceType, e.resourceId ?? '', e.reason ?? '']);
    t.same(row[7] ? JSON.parse(row[7]) : null, e.before);
    t.same(row.slice(9), [e.prevHash ?? '', e.hash]);
  });
  t.equal(rows[2]![6], TRICKY, 'a reason with a comma, quotes and line breaks round-trips');
  t.same(JSON.parse(rows[2]![8]!), { displayName: 'x,y' });
  t.match(res.body, /,"",,,[0-9a-f]{64},/, 'an empty reason is "" and a NULL one is nothing');
  t.match(rows[4]![8], /"big": 12345678901234567890/, 'JSON exactly as stored');

  const none = await get('/api/audit/export?format=csv&actor=nobody');
  t.equal(none.body, `${header!.join(',')}\r\n`, 'no events: the header alone');
});

t.test('JSON export: an array of the same events', async (t) => {
  const res = await get('/api/audit/export?format=json&resourceType=User');
  t.equal(res.statusCode, 200);
  t.equal(res.headers['content-type'], 'application/json; charset=utf-8');
  const listed = (await get('/api/audit?resourceType=User')).json().events;
  t.same(JSON.parse(res.body), listed);
  t.match((await get('/api/audit/export?format=json&actor=wf-1')).body, /"big": 12345678901234567890/, 'numbers exactly as stored');
  t.same((await get('/api/audit/export?format=json&actor=nobody')).json(), []);
});

t.test('exports more events than fit in one batch', async (t) => {
  const db = await createTestDatabase(t);
  const big = await startApp(t, db);
  const { token: tok } = await createToken(db.db, 'admin', ['admin']);
  await db.db.query(`INSERT INTO audit_events (actor, action, resource_type, reason) SELECT 'bulk', 'bulk', 'T', 'r,' || g FROM generate_series(1, 2345) g`);
  const json = await big.inject({ url: '/api/audit/export?format=json', headers: auth(tok) });
  const events = json.json();
  t.equal(events.length, 2345);
  t.same(events.map((e: { reason: string }) => e.reason).slice(998, 1002), ['r,999', 'r,1000', 'r,1001', 'r,1002']);
  t.ok(events.every((e: { id: number }, i: number) => i === 0 || e.id > events[i - 1].id), 'in id order');
  const csv = await big.inject({ url: '/api/audit/export?format=csv&afterId=' + String(events[99].id), headers: auth(tok) });
  t.equal(parseCsv(csv.body).length, 1 + 2245);
  const verified = await big.inject({ url: '/api/audit/verify', headers: auth(tok) });
  t.match(verified.json(), { ok: true, checked: 2345, lastId: events[2344].id });
});

t.test('verify reports the chain', async (t) => {
  const res = await get('/api/audit/verify');
  t.equal(res.statusCode, 200);
  const listed = (await get('/api/audit')).json().events;
  t.same(res.json(), { ok: true, checked: 5, lastId: listed[4].id, lastHash: listed[4].hash });
});

t.test('the audit API needs an admin token', async (t) => {
  for (const url of ['/api/audit', '/api/audit/export?format=csv', '/api/audit/verify']) {
    const anonymous = await app.inject({ url });
    t.equal(anonymous.statusCode, 401, url);
    t.notOk(anonymous.body.includes('stack'));
    t.equal((await get(url, 'scimgw_not-a-token')).statusCode, 401, url);
    t.equal((await get(url, scimToken)).statusCode, 403, url);
  }
});
