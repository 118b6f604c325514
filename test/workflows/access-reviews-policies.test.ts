/**
 * Access reviews on the real Temporal dev server and PostgreSQL, with a connector plugin over an
 * in-memory target: invalid campaigns are refused with clear errors, a users-by-filter scope, the
 * escalate policy (what nobody reviewed goes to a group, then is kept), and review schedules
 * through a Temporal Schedule (created, fired on demand, removed).
 */
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { ScheduleNotFoundError } from '@temporalio/client';
import { userBody } from '../helpers/gateway.js';
import { eventually } from '../helpers/temporal.js';
import { startTestStack } from '../helpers/stack.js';
import { createToken } from '../../core/auth/tokens.js';
import { createWebhookAccessNotifier, type ReviewNotice } from '../../core/access/notifier.js';
import { startNoticeReceiver } from '../core/delivery/notice-receiver.js';
import { memoryTarget } from '../fixtures/memory-connector.js';

const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const MEMORY_PLUGIN = fileURLToPath(new URL('../fixtures/memory-connector.ts', import.meta.url));
const APPROVER_FUNCTION = fileURLToPath(new URL('../fixtures/approver-function.ts', import.meta.url));

t.test('campaign validation, users by filter, escalation and schedules', async (t) => {
  const stack = await startTestStack(t, { idleMs: 1000, worker: false });
  const receiver = await startNoticeReceiver(t, 'policy-secret');
  await stack.temporal.startWorker(stack.database.newPool(), { deps: { accessNotifier: createWebhookAccessNotifier({ url: receiver.url, secret: 'policy-secret' }) } });
  const api = stack.gw.call;
  const ns = `reviews-${stack.temporal.taskQueue}`;
  await api('PUT', '/api/connectors/memory', { id: 'memory', type: MEMORY_PLUGIN, config: { namespace: ns } }, 200);
  await api('POST', '/api/entitlements', { connectorId: 'memory', name: 'vault', target: { group: 'vault' } }, 201);
  const id: Record<string, string> = {};
  for (const [n, dept] of [['ann', 'Sales'], ['ben', 'Sales'], ['cid', 'Support'], ['sam', 'Security']] as const) {
    id[n] = (await api('POST', '/scim/v2/Users', userBody(`${n}@example.com`, { title: dept }), 201)).id as string;
  }
  await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Security', members: [{ value: id.sam }] }, 201);
  for (const n of ['ann', 'ben', 'cid']) await api('POST', '/api/grants', { userId: id[n], entitlement: 'memory/vault' }, 201);
  const target = memoryTarget(ns);
  await eventually(async () => target.groups.get('vault')?.size === 3, 60_000, 'the vault memberships');

  await t.test('invalid campaigns are refused with what is wrong', async (t) => {
    const base = { name: 'bad', scope: { connectors: ['memory'] }, reviewers: { manager: 1 }, durationSeconds: 60 };
    const refused = async (body: object, message: RegExp) => {
      const res = await stack.gw.scim({ method: 'POST', url: '/api/access-reviews', payload: body, headers: { 'content-type': 'application/json' } });
      t.equal(res.statusCode, 400, JSON.stringify(body));
      t.match(res.json(), { statusCode: 400, error: 'Bad Request', message });
    };
    await refused({ ...base, scope: {} }, /scope: name connectors, entitlements or a userFilter/);
    await refused({ ...base, scope: { connectors: ['nope'] } }, /no connector nope/);
    await refused({ ...base, scope: { entitlements: ['memory/nope'] } }, /no entitlement memory\/nope/);
    await refused({ ...base, scope: { userFilter: 'title eq' } }, /scope.userFilter/);
    await refused({ ...base, reviewers: {} }, /at least one source of reviewers/);
    await refused({ ...base, reviewers: { group: 'Nobody' } }, /no group Nobody/);
    await refused({ ...base, onUnreviewed: { action: 'escalate' } }, /escalate needs escalateTo/);
    await refused({ ...base, remindBeforeSeconds: [60] }, /not shorter than durationSeconds/);
    await refused({ ...base, name: 'Not A Name' }, /name/);
    const missing = await stack.gw.scim({ method: 'GET', url: '/api/access-reviews/00000000-0000-4000-8000-000000000000' });
    t.equal(missing.statusCode, 404);
    t.same(await api('GET', '/api/access-reviews'), [], 'nothing was recorded');
  });

  await t.test('users by SCIM filter; unreviewed items escalate to a group, then are kept', async (t) => {
    const c = await api(
      'POST',
      '/api/access-reviews',
      {
        name: 'sales-vault',
        scope: { userFilter: 'title eq "Sales"' },
        reviewers: { manager: 1 },
        durationSeconds: 5,
        onUnreviewed: { action: 'escalate', escalateTo: 'Security', escalationSeconds: 8, then: 'keep' },
      },
      201,
    );
    const open = await eventually(async () => {
      const v = await api('GET', `/api/access-reviews/${c.id}`);
      return v.status === 'open' || v.status === 'escalated' ? v : undefined;
    }, 30_000, 'the campaign to open');
    t.equal(open.progress.total, 2, 'only the Sales users');
    const items = await api('GET', `/api/access-reviews/${c.id}/items`);
    t.match(items, [{ reviewers: [], reviewerNote: /no manager.*nobody to review it/ }, { reviewers: [] }], 'nobody has a manager: nobody reviews until the due date');
    await eventually(async () => (await api('GET', `/api/access-reviews/${c.id}`)).status === 'escalated', 30_000, 'the escalation at the due date');
    const escalated = await api('GET', `/api/access-reviews/${c.id}/items`);
    t.ok(escalated.every((i: { reviewers: string[]; escalated: boolean }) => i.escalated && i.reviewers.join() === 'sam@example.com'), 'the escalation group reviews what is left');
    const notice = await eventually(async () => receiver.notices.map((n) => n as unknown as ReviewNotice).find((n) => n.type === 'review.escalated' && n.campaignId === c.id), 30_000, 'the escalation notice');
    t.same(notice.recipients.map((r) => r.userName), ['sam@example.com']);
    t.equal(notice.pending, 2);
    const token = (await createToken(stack.database.db, 'personal-sam', ['requests'], undefined, id.sam)).token;
    const ann = escalated.find((i: { userName: string }) => i.userName === 'ann@example.com');
    const res = await stack.gw.scim({ method: 'POST', url: `/api/reviews/${ann.id}/decision`, token, payload: { decision: 'revoke', comment: 'left sales' }, headers: { 'content-type': 'application/json' } });
    t.equal(res.statusCode, 200);
    const closed = await eventually(async () => {
      const v = await api('GET', `/api/access-reviews/${c.id}`);
      return v.status === 'closed' ? v : undefined;
    }, 30_000, 'the end of the escalation');
    t.match(closed.progress, { total: 2, kept: 1, revoked: 1, pending: 0 });
    const ben = (await api('GET', `/api/access-reviews/${c.id}/items?status=kept`))[0];
    t.match(ben, { userName: 'ben@example.com', decision: 'keep', comment: 'not reviewed by the end of the escalation', outcome: 'kept by the policy for items not reviewed' });
    await eventually(async () => !target.groups.get('vault')?.has(`acct-${id.ann}`) && target.groups.get('vault')?.has(`acct-${id.ben}`) === true && target.groups.get('vault')?.size === 2, 60_000, "ann's access to be revoked");
    t.pass('the revoked membership left the target; the kept ones stay');
  });

  await t.test('reviewers from an approver function; one that cannot be loaded adds nobody, saying why', async (t) => {
    await api('POST', '/scim/v2/Users', userBody('cat@example.com'), 201);
    const opened = async (name: string, fn: string) => {
      const c = await api('POST', '/api/access-reviews', { name, scope: { entitlements: ['memory/vault'] }, reviewers: { function: fn }, durationSeconds: 600 }, 201);
      await eventually(async () => (await api('GET', `/api/access-reviews/${c.id}`)).status === 'open', 30_000, `${name} to open`);
      return (await api('GET', `/api/access-reviews/${c.id}/items`)) as Array<{ userName: string; reviewers: string[]; reviewerNote: string | null }>;
    };
    const items = await opened('fn-review', APPROVER_FUNCTION);
    t.same(items.map((i) => `${i.userName} ${i.reviewers.join()}`), ['ben@example.com cat@example.com', 'cid@example.com cat@example.com'], 'the function names cat (the unknown user it also names is ignored)');
    const broken = await opened('fn-broken', '/nonexistent/approvers.ts');
    t.ok(broken.every((i) => i.reviewers.length === 0 && /cannot be loaded/.test(i.reviewerNote ?? '')), 'nobody, and the items say why');
  });

  await t.test('a review schedule is a Temporal Schedule that opens campaigns', async (t) => {
    const body = { campaign: { scope: { connectors: ['memory'] }, reviewers: { group: 'Security' }, durationSeconds: 600 }, schedule: { every: 'quarterly' } };
    const saved = await api('PUT', '/api/access-review-schedules/vault-quarterly', body, 201);
    t.match(saved, { name: 'vault-quarterly', schedule: { every: 'quarterly' } });
    const handle = stack.temporal.client.schedule.getHandle('review-schedule:vault-quarterly');
    const described = await handle.describe();
    t.same(described.spec.calendars?.length ?? 0, 1, 'one calendar: the quarterly cron');
    t.equal((await api('PUT', '/api/access-review-schedules/vault-quarterly', { ...body, schedule: { cron: '0 8 1 * *' } })).name, 'vault-quarterly', 'replaced (200)');
    const bad = await stack.gw.scim({ method: 'PUT', url: '/api/access-review-schedules/x', payload: { ...body, schedule: { every: 'weekly', cron: '0 8 * * *' } }, headers: { 'content-type': 'application/json' } });
    t.equal(bad.statusCode, 400);
    t.match(bad.json().message, /exactly one of every, everySeconds and cron/);

    t.same(await api('POST', '/api/access-review-schedules/vault-quarterly/run', undefined, 202), { schedule: 'vault-quarterly', scheduleId: 'review-schedule:vault-quarterly' });
    const opened = await eventually(async () => ((await api('GET', '/api/access-reviews')) as Array<{ id: string; schedule: string | null; status: string; progress: { total: number } }>).find((c) => c.schedule === 'vault-quarterly' && c.status === 'open'), 60_000, 'the scheduled campaign');
    t.equal(opened.progress.total, 2, "the schedule's campaign lists the current holders (ann's access was revoked)");
    t.match(opened, { name: 'vault-quarterly', workflowId: /^review-schedule:vault-quarterly/ });

    await api('DELETE', '/api/access-review-schedules/vault-quarterly', undefined, 204);
    await t.rejects(handle.describe(), ScheduleNotFoundError, 'the Temporal Schedule is gone');
    t.equal((await stack.gw.scim({ method: 'DELETE', url: '/api/access-review-schedules/vault-quarterly' })).statusCode, 404);
    t.equal((await api('GET', `/api/access-reviews/${opened.id}`)).status, 'open', 'its campaign goes on');
  });
});
