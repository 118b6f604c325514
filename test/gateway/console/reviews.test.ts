/**
 * The console's Reviews page over HTTP (app.inject with the session cookie of the local sign-in),
 * on PostgreSQL, the Temporal dev server with a worker and an in-memory target: a reviewer sees
 * the items waiting on them with why each is held, keeps and revokes several in one form (the
 * revoked access leaves the target), is not offered revoking access a rule gives; a forged form by
 * someone who is not the reviewer and a form without the CSRF token are refused.
 */
import { fileURLToPath } from 'node:url';
import t from 'tap';
import type { LightMyRequestResponse } from 'fastify';
import { userBody } from '../../helpers/gateway.js';
import { eventually } from '../../helpers/temporal.js';
import { startTestStack } from '../../helpers/stack.js';
import { memoryTarget } from '../../fixtures/memory-connector.js';

const PLUGIN = fileURLToPath(new URL('../../fixtures/memory-connector.ts', import.meta.url));
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

const { gw, temporal } = await startTestStack(t, { idleMs: 1000, consoleLocalSignIn: true });
const { app } = gw;
const api = gw.call;
const ns = `console-reviews-${temporal.taskQueue}`;
const target = memoryTarget(ns);

await api('PUT', '/api/connectors/memory', { id: 'memory', type: PLUGIN, config: { namespace: ns } }, 200);
await api('POST', '/api/entitlements', { connectorId: 'memory', name: 'wiki', target: { group: 'wiki' } }, 201);
const ids: Record<string, string> = {};
for (const name of ['rev', 'bob', 'cid', 'dan']) ids[name] = (await api('POST', '/scim/v2/Users', userBody(`${name}@example.com`), 201)).id as string;
await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Reviewers', members: [{ value: ids.rev }] }, 201);
await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Writers', members: [{ value: ids.cid }] }, 201);
await api('POST', '/api/rules', { name: 'writers', group: 'Writers', entitlements: ['memory/wiki'] }, 201);
for (const n of ['bob', 'dan']) await api('POST', '/api/grants', { userId: ids[n], entitlement: 'memory/wiki' }, 201);
await eventually(async () => target.groups.get('wiki')?.size === 3, 60_000, 'the wiki memberships');

interface Person {
  session: string;
  csrf: string;
}
async function signIn(name: string): Promise<Person> {
  const form = await app.inject({ url: '/console' });
  const token = /name="_csrf" value="([^"]+)"/.exec(form.body)![1]!;
  const pre = form.cookies.find((c) => c.name === 'console_csrf')!.value;
  const res = await app.inject({ method: 'POST', url: '/console/login/local', payload: `userId=${ids[name]}&_csrf=${token}`, headers: FORM, cookies: { console_csrf: pre } });
  if (res.statusCode !== 303) throw new Error(`sign-in of ${name}: ${res.statusCode}`);
  const session = res.cookies.find((c) => c.name === 'console_session')!.value;
  const page = await app.inject({ url: '/console/catalogue', cookies: { console_session: session } });
  return { session, csrf: /action="\/console\/logout"><input type="hidden" name="_csrf" value="([^"]+)"/.exec(page.body)![1]! };
}
const people: Record<string, Person> = {};
for (const name of ['rev', 'bob']) people[name] = await signIn(name);
const get = async (who: string, url: string) => await app.inject({ url, cookies: { console_session: people[who]!.session } });
async function post(who: string, url: string, fields: Record<string, string>, csrf = true): Promise<LightMyRequestResponse> {
  const payload = new URLSearchParams({ ...(csrf ? { _csrf: people[who]!.csrf } : {}), ...fields }).toString();
  return await app.inject({ method: 'POST', url, payload, headers: FORM, cookies: { console_session: people[who]!.session } });
}

const campaign = await api('POST', '/api/access-reviews', { name: 'wiki-review', scope: { entitlements: ['memory/wiki'] }, reviewers: { group: 'Reviewers' }, durationSeconds: 3600 }, 201);
await eventually(async () => (await api('GET', `/api/access-reviews/${campaign.id}`)).status === 'open', 60_000, 'the campaign to open');
const items = (await api('GET', `/api/access-reviews/${campaign.id}/items`)) as Array<{ id: string; userName: string }>;
const itemOf = (n: string) => items.find((i) => i.userName === `${n}@example.com`)!.id;

t.test('the reviewer sees their items, with why each is held; nobody else does', async (t) => {
  const page = await get('rev', '/console/reviews');
  t.equal(page.statusCode, 200);
  t.match(page.body, /<a href="\/console\/reviews">Reviews<\/a>/, 'in the navigation');
  t.match(page.body, /<h2 id="rc-[0-9a-f-]+">wiki-review<\/h2><p>3 items waiting on you/);
  t.match(page.body, /bob@example\.com: memory\/wiki<\/legend>\s*<p>Why: granted directly by an administrator/);
  t.match(page.body, /cid@example\.com: memory\/wiki<\/legend>\s*<p>Why: rule writers \(birthright\)/);
  t.match(page.body, new RegExp(`name="d-${itemOf('bob')}" value="revoke"`), 'revoking granted access is offered');
  t.notMatch(page.body, new RegExp(`name="d-${itemOf('cid')}" value="revoke"`), 'revoking access a rule gives is not');
  t.match(page.body, /rule writers gives this access; change the rule to take it away/);
  t.match((await get('bob', '/console/reviews')).body, /No access review is waiting on you/);
});

t.test('refused: a forged form by someone who is not the reviewer, a form without the CSRF token, an empty form', async (t) => {
  const forged = await post('bob', '/console/reviews/decisions', { [`d-${itemOf('dan')}`]: 'revoke' });
  t.equal(forged.statusCode, 403);
  t.match(forged.body, /not a reviewer of this item/);
  const own = await post('bob', '/console/reviews/decisions', { [`d-${itemOf('bob')}`]: 'keep' });
  t.equal(own.statusCode, 403);
  t.match(own.body, /nobody reviews their own access/);
  t.equal((await post('rev', '/console/reviews/decisions', { [`d-${itemOf('dan')}`]: 'revoke' }, false)).statusCode, 403, 'no CSRF token');
  t.equal((await post('rev', '/console/reviews/decisions', { [`d-${itemOf('dan')}`]: '' })).statusCode, 400, 'nothing chosen');
  t.equal((await api('GET', `/api/access-reviews/${campaign.id}`)).progress.pending, 3, 'nothing was decided');
});

t.test('keep and revoke several items in one form; the revoked access leaves the target', async (t) => {
  const res = await post('rev', '/console/reviews/decisions', {
    [`d-${itemOf('bob')}`]: 'revoke',
    [`c-${itemOf('bob')}`]: 'no longer writes',
    [`d-${itemOf('cid')}`]: 'keep',
    [`d-${itemOf('dan')}`]: '',
  });
  t.equal(res.statusCode, 303);
  t.equal(res.headers.location, '/console/reviews?decided=2&refused=0');
  const after = await get('rev', '/console/reviews?decided=2&refused=0');
  t.match(after.body, /2 decisions recorded/);
  t.match(after.body, /1 item waiting on you/, "dan's item is still waiting");
  const decided = (await api('GET', `/api/access-reviews/${campaign.id}/items`)) as Array<{ userName: string; decision: string | null; decidedBy: string | null; comment: string | null }>;
  t.match(decided.find((i) => i.userName === 'bob@example.com'), { decision: 'revoke', decidedBy: 'rev@example.com', comment: 'no longer writes' });
  t.match(decided.find((i) => i.userName === 'cid@example.com'), { decision: 'keep', decidedBy: 'rev@example.com' });
  const member = (n: string) => target.groups.get('wiki')?.has(`acct-${ids[n]}`) ?? false;
  await eventually(async () => !member('bob'), 60_000, "bob's wiki membership to be revoked");
  t.ok(member('cid') && member('dan'), 'the others stay');
});
