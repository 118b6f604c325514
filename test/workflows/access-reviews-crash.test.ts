/**
 * Durability of access reviews: worker processes are killed again and again while a campaign over
 * a GitHub team (the real connector against the fake) is generated, decided and closed by its
 * due-date policy. Every item is generated once and decided exactly once, every revoked grant ends
 * once, and the team ends up with exactly the access that was kept.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import t from 'tap';
import { userBody } from '../helpers/gateway.js';
import { eventually } from '../helpers/temporal.js';
import { startTestStack } from '../helpers/stack.js';
import { createToken } from '../../core/auth/tokens.js';
import { startFakeGitHub } from '../connectors/github/fake-github.js';

const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const USERS = 30;
const GH_TOKEN = 'ghp_reviewsCrash0123456789abcdefghijkl';

t.test('killing workers mid-campaign loses and repeats nothing', async (t) => {
  const { database, temporal, gw } = await startTestStack(t, { idleMs: 1000, worker: false });
  const github = await startFakeGitHub({ tokens: [GH_TOKEN] });
  t.teardown(() => github.close());
  const api = gw.call;
  const env = {
    ...process.env,
    DATABASE_URL: database.url,
    TEMPORAL_ADDRESS: temporal.address,
    TEMPORAL_TASK_QUEUE: temporal.taskQueue,
    REVIEWS_CRASH_GH_TOKEN: GH_TOKEN,
    LOG_LEVEL: 'error',
  };
  const workers: ChildProcess[] = [];
  const startWorker = () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'workflows/worker.ts'], { env, stdio: ['ignore', 'ignore', 'ignore'] });
    workers.push(child);
    return child;
  };
  const kill = async (w: ChildProcess) => {
    w.kill('SIGKILL');
    if (w.exitCode === null && w.signalCode === null) await new Promise((r) => w.once('exit', r));
  };
  t.teardown(() => workers.forEach((w) => w.kill('SIGKILL')));
  let worker = startWorker();

  github.addTeam('eng');
  await api('PUT', '/api/connectors/github', { id: 'github', type: 'github', config: { baseUrl: github.url, org: 'acme', token: 'env:REVIEWS_CRASH_GH_TOKEN', usernameAttribute: 'nickName' } });
  await api('POST', '/api/entitlements', { connectorId: 'github', name: 'eng-team', target: { team: 'eng', role: 'member' } }, 201);
  const rita = (await api('POST', '/scim/v2/Users', userBody('rita@example.com'), 201)).id as string;
  await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Reviewers', members: [{ value: rita }] }, 201);
  const logins: string[] = [];
  for (let i = 0; i < USERS; i++) {
    const login = `dev${i}`;
    logins.push(login);
    github.addMember(login);
    const id = (await api('POST', '/scim/v2/Users', userBody(`${login}@example.com`, { nickName: login }), 201)).id as string;
    await api('POST', '/api/grants', { userId: id, entitlement: 'github/eng-team' }, 201);
  }
  await eventually(async () => logins.every((l) => github.teams.get('eng')?.members.get(l) === 'member'), 180_000, 'the team to be provisioned');

  const campaign = await api(
    'POST',
    '/api/access-reviews',
    { name: 'crash-review', scope: { entitlements: ['github/eng-team'] }, reviewers: { group: 'Reviewers' }, durationSeconds: 45, onUnreviewed: { action: 'revoke' } },
    201,
  );
  // Killed while the campaign is generated (or just after).
  await new Promise((r) => setTimeout(r, 1500));
  await kill(worker);
  worker = startWorker();
  await eventually(async () => (await api('GET', `/api/access-reviews/${campaign.id}`)).status === 'open', 120_000, 'the campaign to open');
  await kill(worker);

  // Decisions while no worker runs at all: they are recorded; the workflow hears of them later.
  const token = (await createToken(database.db, 'personal-rita', ['requests'], undefined, rita)).token;
  const items = (await gw.scim({ method: 'GET', url: '/api/reviews', token })).json<Array<{ id: string; userName: string }>>();
  t.equal(items.length, USERS, 'one item per holder, generated once');
  const byLogin = new Map(items.map((i) => [i.userName.split('@')[0]!, i.id]));
  const keep = logins.slice(0, 10);
  const revoke = logins.slice(10, 20);
  const decide = async (list: string[], decision: 'keep' | 'revoke') =>
    await gw.scim({ method: 'POST', url: '/api/reviews/decisions', token, payload: { decisions: list.map((l) => ({ item: byLogin.get(l)!, decision, comment: `${decision} ${l}` })) }, headers: { 'content-type': 'application/json' } });
  t.equal((await decide(keep, 'keep')).statusCode, 200);
  worker = startWorker();
  t.equal((await decide(revoke, 'revoke')).statusCode, 200);
  // A client that retries the whole batch: nothing is done twice.
  const retried = await decide(revoke, 'revoke');
  t.ok((retried.json().results as Array<{ status: number }>).every((r) => r.status === 200), 'a retried batch answers the same');

  // Around the due date, kill again and again; the rest is revoked by the policy exactly once.
  const dueAt = Date.parse(campaign.dueAt as string);
  await new Promise((r) => setTimeout(r, Math.max(0, dueAt - Date.now() - 2000)));
  for (let round = 0; round < 3; round++) {
    await new Promise((r) => setTimeout(r, 1500));
    await kill(worker);
    worker = startWorker();
  }
  await eventually(async () => (await api('GET', `/api/access-reviews/${campaign.id}`)).status === 'closed', 180_000, 'the campaign to close');

  const db = database.db;
  const { rows: accepted } = await db.query<{ n: number; items: number }>(
    `SELECT count(*)::int AS n, count(DISTINCT item_id)::int AS items FROM review_decisions d JOIN review_items i ON i.id = d.item_id WHERE i.campaign_id = $1 AND d.accepted`,
    [campaign.id],
  );
  t.same(accepted[0], { n: USERS, items: USERS }, 'every item decided exactly once');
  const { rows: events } = await db.query<{ n: number; distinct: number }>(
    `SELECT count(*)::int AS n, count(DISTINCT resource_id)::int AS distinct FROM audit_events WHERE action = 'access-review.decided'`,
  );
  t.same(events[0], { n: USERS, distinct: USERS }, 'one decision event per item');
  const { rows: ended } = await db.query<{ n: number; distinct: number }>(`SELECT count(*)::int AS n, count(DISTINCT resource_id)::int AS distinct FROM audit_events WHERE action = 'grant.ended'`);
  t.same(ended[0], { n: USERS - keep.length, distinct: USERS - keep.length }, 'every revoked grant ended once');
  const progress = (await api('GET', `/api/access-reviews/${campaign.id}`)).progress;
  t.same(progress, { total: USERS, pending: 0, kept: keep.length, revoked: USERS - keep.length });
  await eventually(async () => [...(github.teams.get('eng')?.members.keys() ?? [])].sort().join() === [...keep].sort().join(), 180_000, 'only the kept access left in the team');
  t.pass('the team holds exactly the access that was kept');
  const { rows: generated } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM review_items WHERE campaign_id = $1`, [campaign.id]);
  t.equal(generated[0]!.n, USERS, 'no item was generated twice');
});
