/**
 * Access reviews end to end on the real Temporal dev server and PostgreSQL, with the real GitHub
 * and Google Groups connectors against their fakes: a campaign over a GitHub team and Google
 * groups, reviewed by the users' manager. Kept access stays, revoked access disappears from the
 * fakes, access a rule gives is flagged and cannot be revoked by a review, a membership nobody
 * granted (found by reconciliation) is revocable, a non-reviewer and self-review are refused, a
 * repeated decision changes nothing, items left past the due date follow the policy, and the
 * auditors' report lists every item with the audit chain's verification.
 */
import t from 'tap';
import { startTestStack } from '../helpers/stack.js';
import { eventually } from '../helpers/temporal.js';
import { defaultPayloadConverter } from '@temporalio/common';
import { userBody } from '../helpers/gateway.js';
import { EventType } from '../helpers/history.js';
import { createToken } from '../../core/auth/tokens.js';
import { createWebhookAccessNotifier, type ReviewNotice } from '../../core/access/notifier.js';
import { startNoticeReceiver } from '../core/delivery/notice-receiver.js';
import { startFakeGitHub } from '../connectors/github/fake-github.js';
import { startFakeGoogle } from '../connectors/google-groups/fake-google.js';
import { reviewDecidedSearchAttribute, reviewPendingSearchAttribute, reviewStatusSearchAttribute } from '../../workflows/certification-messages.js';

const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const ENTERPRISE = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';
const GH_TOKEN = 'ghp_reviewsEndToEnd0123456789abcdefgh';

t.test('a campaign over a GitHub team and Google groups, reviewed by managers', async (t) => {
  const github = await startFakeGitHub({ tokens: [GH_TOKEN] });
  t.teardown(() => github.close());
  const google = await startFakeGoogle();
  t.teardown(() => google.close());
  process.env.REVIEWS_GH_TOKEN = GH_TOKEN;
  process.env.REVIEWS_GOOGLE_KEY = google.serviceAccount.keyJson();

  const stack = await startTestStack(t, { idleMs: 500, worker: false });
  const receiver = await startNoticeReceiver(t, 'review-secret');
  await stack.temporal.startWorker(stack.database.newPool(), { deps: { accessNotifier: createWebhookAccessNotifier({ url: receiver.url, secret: 'review-secret' }) } });
  const { db } = stack.database;
  const api = stack.gw.call;

  const ENG = 'eng@example.com';
  const OPS = 'ops@example.com';
  github.addTeam('eng');
  google.addGroup(ENG, 'Engineering');
  google.addGroup(OPS, 'Operations');
  await api('PUT', '/api/connectors/github', { id: 'github', type: 'github', config: { baseUrl: github.url, org: 'acme', token: 'env:REVIEWS_GH_TOKEN', usernameAttribute: 'nickName' } });
  await api('PUT', '/api/connectors/google', {
    id: 'google',
    type: 'google-groups',
    config: { serviceAccountKey: 'env:REVIEWS_GOOGLE_KEY', subject: `admin@${google.domain}`, rootUrl: google.url, oauthEndpoint: google.tokenUrl },
  });
  await api('POST', '/api/entitlements', { connectorId: 'github', name: 'eng-team', target: { team: 'eng', role: 'member' } }, 201);
  await api('POST', '/api/entitlements', { connectorId: 'google', name: 'eng-group', target: { group: ENG, role: 'MEMBER' } }, 201);
  await api('POST', '/api/entitlements', { connectorId: 'google', name: 'ops-group', target: { group: OPS, role: 'MEMBER' } }, 201);

  // mona manages everyone else; sam is in Security (the fallback reviewers) with mona.
  const id: Record<string, string> = {};
  const email = (n: string) => `${n}@${google.domain}`;
  for (const n of ['mona', 'sam']) {
    google.addUser(email(n));
    id[n] = (await api('POST', '/scim/v2/Users', userBody(email(n), { nickName: n, emails: [{ value: email(n), primary: true }] }), 201)).id as string;
  }
  for (const n of ['alice', 'bob', 'carol', 'dave', 'erin']) {
    google.addUser(email(n));
    // Org members already: a team grant makes them team members at once.
    github.addMember(n);
    id[n] = (await api('POST', '/scim/v2/Users', userBody(email(n), { nickName: n, emails: [{ value: email(n), primary: true }], schemas: ['urn:ietf:params:scim:schemas:core:2.0:User', ENTERPRISE], [ENTERPRISE]: { manager: { value: id.mona } } }), 201)).id as string;
  }
  await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Engineering', members: [{ value: id.alice }] }, 201);
  await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Security', members: [{ value: id.mona }, { value: id.sam }] }, 201);
  // Birthright: the rule gives alice the team. Manual grants give the rest.
  await api('POST', '/api/rules', { name: 'engineering', group: 'Engineering', entitlements: ['github/eng-team'] }, 201);
  for (const [who, what] of <Array<[string, string]>>[
    ['bob', 'github/eng-team'],
    ['carol', 'github/eng-team'],
    ['bob', 'google/eng-group'],
    ['carol', 'google/eng-group'],
    ['dave', 'google/eng-group'],
    ['erin', 'google/eng-group'],
    ['mona', 'google/eng-group'],
  ]) {
    await api('POST', '/api/grants', { userId: id[who], entitlement: what }, 201);
  }
  await eventually(
    async () =>
      ['alice', 'bob', 'carol'].every((n) => github.teams.get('eng')?.members.get(n) === 'member') &&
      ['bob', 'carol', 'dave', 'erin', 'mona'].every((n) => google.roleOf(ENG, email(n)) === 'MEMBER'),
    90_000,
    'the memberships to be provisioned',
  );
  // Someone added erin to the ops group in Google by hand; reconciliation finds it (additive: left alone).
  google.addMember(OPS, email('erin'));
  await api('POST', '/api/connectors/google/reconcile', { wait: true });
  const drift = await api('GET', '/api/connectors/google/drift');
  t.ok(
    (drift.drift as Array<{ kind: string; userName: string | null; entitlement: string | null }>).some((d) => d.kind === 'unexpectedMembership' && d.userName === email('erin') && d.entitlement === 'google/ops-group'),
    'reconciliation found the membership nobody granted',
  );

  // The campaign: the manager reviews; 40 s to the due date, a reminder 15 s before; unreviewed items are revoked.
  const campaign = await api(
    'POST',
    '/api/access-reviews',
    {
      name: 'q4-engineering',
      description: 'Quarterly review of engineering access',
      scope: { connectors: ['github', 'google'] },
      reviewers: { manager: 1 },
      fallbackGroup: 'Security',
      durationSeconds: 40,
      remindBeforeSeconds: [15],
      onUnreviewed: { action: 'revoke' },
    },
    201,
  );
  t.equal(campaign.status, 'generating');
  const opened = await eventually(async () => {
    const c = await api('GET', `/api/access-reviews/${campaign.id}`);
    return c.status === 'open' ? c : undefined;
  }, 60_000, 'the campaign to open');
  t.equal(opened.progress.total, 9, 'one item per user × entitlement: 3 GitHub, 5 eng-group, 1 ops-group');

  const token: Record<string, string> = {};
  for (const n of ['mona', 'sam']) token[n] = (await createToken(db, `personal-${n}`, ['requests'], undefined, id[n])).token;
  const as = async (who: string, method: 'GET' | 'POST', url: string, payload?: object) =>
    await stack.gw.scim({ method, url, token: token[who]!, ...(payload ? { payload, headers: { 'content-type': 'application/json' } } : {}) });

  type Item = { id: string; userName: string; entitlement: string; birthright: boolean; ungranted: boolean; reviewers: string[]; status: string; reasons: string[]; outcome: string | null };
  const monaItems = (await as('mona', 'GET', '/api/reviews')).json<Item[]>();
  t.same(
    monaItems.map((i) => `${i.userName.split('@')[0]} ${i.entitlement}`).sort(),
    ['alice github/eng-team', 'bob github/eng-team', 'bob google/eng-group', 'carol github/eng-team', 'carol google/eng-group', 'dave google/eng-group', 'erin google/eng-group', 'erin google/ops-group'],
    "mona reviews her reports' access, not her own",
  );
  const item = (user: string, entitlement: string) => monaItems.find((i) => i.userName === email(user) && i.entitlement === entitlement)!;
  t.ok(item('alice', 'github/eng-team').birthright, "alice's team membership is flagged as given by a rule");
  t.same(item('alice', 'github/eng-team').reasons, ['rule:engineering']);
  t.ok(item('erin', 'google/ops-group').ungranted, "erin's ops membership is flagged as granted by nobody");
  const samItems = (await as('sam', 'GET', '/api/reviews')).json<Item[]>();
  t.same(samItems.map((i) => `${i.userName.split('@')[0]} ${i.entitlement}`), ['mona google/eng-group'], "mona has no manager: the fallback group reviews her access, without her");

  const notice = await eventually(
    async () => receiver.notices.map((n) => n as unknown as ReviewNotice).find((n) => n.type === 'review.awaiting-you' && n.recipients[0]?.userId === id.mona),
    30_000,
    'the notice to mona',
  );
  t.equal(notice.pending, 8, 'mona is told how many items wait on her');
  t.equal(notice.campaign, 'q4-engineering');

  // Refusals: a non-reviewer, self-review, revoking birthright access.
  const bobTeam = item('bob', 'github/eng-team');
  const bySam = await as('sam', 'POST', `/api/reviews/${bobTeam.id}/decision`, { decision: 'revoke', comment: 'not mine to decide' });
  t.equal(bySam.statusCode, 403, 'a non-reviewer is refused');
  t.match(bySam.json(), { message: 'not a reviewer of this item', item: { status: 'pending' } });
  const own = samItems[0]!;
  const self = await as('mona', 'POST', `/api/reviews/${own.id}/decision`, { decision: 'keep' });
  t.equal(self.statusCode, 403, 'self-review is refused');
  t.match(self.json(), { message: 'nobody reviews their own access' });
  const rule = await as('mona', 'POST', `/api/reviews/${item('alice', 'github/eng-team').id}/decision`, { decision: 'revoke', comment: 'left the project' });
  t.equal(rule.statusCode, 409, 'access a rule gives is not revoked directly');
  t.match(rule.json().message, /rule engineering/);

  // mona decides: keep some, revoke others; one by one and in bulk.
  const carolTeam = item('carol', 'github/eng-team');
  const revoked = await as('mona', 'POST', `/api/reviews/${carolTeam.id}/decision`, { decision: 'revoke', comment: 'moved to sales' });
  t.equal(revoked.statusCode, 200);
  t.match(revoked.json(), { status: 'revoked', decision: 'revoke', comment: 'moved to sales', outcome: /ended grant/ });
  const again = await as('mona', 'POST', `/api/reviews/${carolTeam.id}/decision`, { decision: 'revoke', comment: 'moved to sales' });
  t.equal(again.statusCode, 200, 'the same decision again answers the same');
  const other = await as('mona', 'POST', `/api/reviews/${carolTeam.id}/decision`, { decision: 'keep' });
  t.equal(other.statusCode, 409, 'a different decision on a decided item is refused');
  const bulk = await as('mona', 'POST', '/api/reviews/decisions', {
    decisions: [
      { item: item('alice', 'github/eng-team').id, decision: 'keep', comment: 'core team' },
      { item: bobTeam.id, decision: 'keep' },
      { item: item('bob', 'google/eng-group').id, decision: 'revoke', comment: 'no longer needed' },
      { item: item('carol', 'google/eng-group').id, decision: 'keep' },
      { item: item('erin', 'google/eng-group').id, decision: 'keep' },
      { item: item('erin', 'google/ops-group').id, decision: 'revoke', comment: 'nobody granted this' },
      { item: own.id, decision: 'keep' },
    ],
  });
  t.equal(bulk.statusCode, 200);
  const results = bulk.json().results as Array<{ itemId: string; ok: boolean; status: number }>;
  t.same(results.map((r) => r.status), [200, 200, 200, 200, 200, 200, 403], 'each decided on its own; her own item is refused in bulk too');
  t.equal((await as('sam', 'POST', `/api/reviews/${own.id}/decision`, { decision: 'keep', comment: 'needed for on-call' })).statusCode, 200, "sam keeps mona's access");
  t.match(await api('GET', `/api/access-reviews/${campaign.id}`), { progress: { total: 9, pending: 1, kept: 5, revoked: 3 } }, 'dave is left undecided');

  // Revoked access disappears from the fakes; kept access stays.
  await eventually(
    async () => !github.teams.get('eng')?.members.has('carol') && google.roleOf(ENG, email('bob')) === undefined && google.roleOf(OPS, email('erin')) === undefined,
    90_000,
    'revoked access to leave GitHub and Google',
  );
  t.equal(github.teams.get('eng')?.members.get('alice'), 'member', 'kept (rule) access stays');
  t.equal(github.teams.get('eng')?.members.get('bob'), 'member', 'kept access stays');
  t.equal(google.roleOf(ENG, email('carol')), 'MEMBER');

  // The reminder reaches mona (dave's item is still pending); at the due date the policy revokes it.
  const reminder = await eventually(
    async () => receiver.notices.map((n) => n as unknown as ReviewNotice).find((n) => n.type === 'review.reminder' && n.recipients[0]?.userId === id.mona),
    60_000,
    'the reminder',
  );
  t.equal(reminder.pending, 1, 'the reminder counts what is still pending');
  t.notOk(receiver.notices.some((n) => (n as unknown as ReviewNotice).type === 'review.reminder' && (n as unknown as ReviewNotice).recipients[0]?.userId === id.sam), 'sam has nothing pending: no reminder');
  const closed = await eventually(async () => {
    const c = await api('GET', `/api/access-reviews/${campaign.id}`);
    return c.status === 'closed' ? c : undefined;
  }, 90_000, 'the campaign to close at the due date');
  t.match(closed.progress, { total: 9, pending: 0, kept: 5, revoked: 4 });
  const daveItem = (await api('GET', `/api/access-reviews/${campaign.id}/items?status=revoked`)).find((i: Item) => i.userName === email('dave'));
  t.match(daveItem, { decision: 'revoke', decidedBy: 'access review q4-engineering', comment: 'not reviewed by the due date' });
  await eventually(async () => google.roleOf(ENG, email('dave')) === undefined, 90_000, "dave's unreviewed access to be revoked");

  // Nothing done twice: one grant.ended per revoked grant, with the review in its reason.
  const { rows: ended } = await db.query<{ resource_id: string; reason: string; n: number }>(
    `SELECT resource_id, min(reason) AS reason, count(*)::int AS n FROM audit_events WHERE action = 'grant.ended' GROUP BY resource_id ORDER BY 2`,
  );
  t.equal(ended.length, 3, 'three grants ended (carol team, bob group, dave group)');
  t.ok(ended.every((e) => e.n === 1), 'each once');
  t.ok(ended.some((e) => e.reason === 'access review q4-engineering: revoked by ' + email('mona') + ': moved to sales'), 'the audit chain records why');

  // The auditors' report.
  const report = await api('GET', `/api/access-reviews/${campaign.id}/report`);
  t.equal(report.items.length, 9);
  t.match(report.auditChain, { ok: true });
  t.ok(report.auditChain.checked > 0);
  const carolRow = report.items.find((i: { userName: string; entitlement: string }) => i.userName === email('carol') && i.entitlement === 'github/eng-team');
  t.match(carolRow, { decision: 'revoke', decidedBy: email('mona'), comment: 'moved to sales', removedFromTarget: true, outcome: /ended grant/ });
  t.ok(carolRow.decidedAt);
  const bobRow = report.items.find((i: { userName: string; entitlement: string }) => i.userName === email('bob') && i.entitlement === 'github/eng-team');
  t.match(bobRow.refusals, [{ actor: email('sam'), decision: 'revoke', refusal: 'not a reviewer of this item' }], 'refused attempts are in the report');
  const csv = await stack.gw.scim({ method: 'GET', url: `/api/access-reviews/${campaign.id}/report?format=csv` });
  t.equal(csv.statusCode, 200);
  t.match(csv.headers['content-type'], /text\/csv/);
  const lines = csv.body.split('\r\n');
  t.match(lines.find((l) => l.startsWith('auditChain,')), /^auditChain,"verified: \d+ events intact, last id \d+ hash [0-9a-f]{64}"$/);
  t.ok(lines.includes('itemId,userName,userId,entitlement,reasons,birthright,ungranted,reviewers,status,decision,decidedBy,decidedAt,comment,outcome,removedFromTarget,refusals'));
  t.equal(lines.filter((l) => /^[0-9a-f-]{36},/.test(l)).length, 9, 'one CSV row per item');

  // Refusals after the close: the campaign is closed.
  const late = await as('mona', 'POST', `/api/reviews/${item('dave', 'google/eng-group').id}/decision`, { decision: 'keep' });
  t.equal(late.statusCode, 409);

  // The workflow shows its progress in search attributes.
  const described = await stack.temporal.client.workflow.getHandle(`certification:${campaign.id}`).describe();
  t.equal(described.status.name, 'COMPLETED');
  const sa = described.typedSearchAttributes;
  t.equal(sa.get(reviewStatusSearchAttribute), 'closed');
  t.equal(sa.get(reviewDecidedSearchAttribute), 9);
  t.equal(sa.get(reviewPendingSearchAttribute), 0);
  const history = await stack.temporal.client.workflow.getHandle(`certification:${campaign.id}`).fetchHistory();
  const summaries = (history.events ?? [])
    .filter((e) => e.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
    .map((e) => (e.userMetadata?.summary ? defaultPayloadConverter.fromPayload<string>(e.userMetadata.summary) : undefined));
  t.ok(summaries.length > 5 && summaries.every((x) => typeof x === 'string' && x.length > 0), `every activity has a summary: ${JSON.stringify(summaries)}`);
  t.ok(summaries.includes('the due date came: apply the policy to the items not reviewed'));
});
