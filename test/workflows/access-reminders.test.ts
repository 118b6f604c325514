/**
 * Timers of the accessRequest workflow that tell people something, on the real Temporal dev server
 * and PostgreSQL with the signed-webhook notifier: reminders before a stage times out go to the
 * approvers still undecided, and the requester is told before time-bound access ends (given by
 * hand or through a grant).
 */
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { userBody } from '../helpers/gateway.js';
import { eventually } from '../helpers/temporal.js';
import { startTestStack } from '../helpers/stack.js';
import { createToken } from '../../core/auth/tokens.js';
import { createWebhookAccessNotifier, type AccessNotice } from '../../core/access/notifier.js';
import { startNoticeReceiver } from '../core/delivery/notice-receiver.js';

const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const MEMORY_PLUGIN = fileURLToPath(new URL('../fixtures/memory-connector.ts', import.meta.url));

t.test('reminders before a stage times out reach the undecided approvers; the requester is told before time-bound access ends', async (t) => {
  const stack = await startTestStack(t, { idleMs: 1000, worker: false });
  const receiver = await startNoticeReceiver(t, 'reminder-secret');
  await stack.temporal.startWorker(stack.database.newPool(), { deps: { accessNotifier: createWebhookAccessNotifier({ url: receiver.url, secret: 'reminder-secret' }) } });
  const call = stack.gw.call;
  const ns = `reminders-${stack.temporal.taskQueue}`;
  await call('PUT', '/api/connectors/memory', { id: 'memory', type: MEMORY_PLUGIN, config: { namespace: ns } }, 200);
  await call('POST', '/api/entitlements', { connectorId: 'memory', name: 'brief', target: { group: 'brief' } }, 201);
  const people: Record<string, string> = {};
  for (const name of ['rex', 'uma', 'vic', 'wes']) people[name] = (await call('POST', '/scim/v2/Users', userBody(`${name}@example.com`), 201)).id as string;
  await call('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Helpdesk', members: [{ value: people.wes }] }, 201);
  const token: Record<string, string> = {};
  for (const [name, id] of Object.entries(people)) token[name] = (await createToken(stack.database.db, `personal-${name}`, ['requests'], undefined, id)).token;
  const post = async (who: string, url: string, payload: object) => await stack.gw.scim({ method: 'POST', url, token: token[who]!, payload, headers: { 'content-type': 'application/json' } });
  const get = async (who: string, url: string) => (await stack.gw.scim({ method: 'GET', url, token: token[who]! })).json();
  const notice = async (type: string, requestId: string) =>
    await eventually(async () => receiver.notices.map((n) => n as unknown as AccessNotice).find((n) => n.type === type && n.requestId === requestId), 60_000, `${type} of ${requestId}`);

  // Reminders: 4 s before a 12 s timeout, to the approvers who have not decided by then.
  await call(
    'PUT',
    '/api/access-policies/remind',
    { displayName: 'Remind', durations: { defaultSeconds: 600 }, fulfilment: { mode: 'manual', group: 'Helpdesk' }, stages: [{ approvers: { users: ['uma@example.com', 'vic@example.com'] }, rule: 'all', timeoutSeconds: 12, remindBeforeSeconds: [4] }] },
    201,
  );
  const made = await post('rex', '/api/requests', { policy: 'remind' });
  const id = made.json().id as string;
  await notice('request.awaiting-you', id);
  t.equal((await post('uma', `/api/requests/${id}/decisions`, { decision: 'approve' })).statusCode, 200, 'uma decides at once');
  const reminder = await notice('request.reminder', id);
  t.same(reminder.recipients.map((r) => r.userName), ['vic@example.com'], 'the reminder goes to the approver still undecided');
  t.equal(reminder.stage, 0, 'it names the stage');
  const opened = (await stack.database.db.query<{ opened_at: Date }>('SELECT opened_at FROM access_request_stages WHERE request_id = $1', [id])).rows[0]!.opened_at;
  const deadline = new Date(reminder.deadline!).getTime();
  t.ok(deadline >= opened.getTime() + 12_000 - 1000 && deadline <= opened.getTime() + 12_000 + 5000, 'and when it times out');
  t.equal(reminder.id, `${id}:stage-0-reminder-4`, 'one notice id per reminder, the same on every try');
  const expired = await eventually(async () => ((await get('rex', `/api/requests/${id}`)) as { status: string }).status === 'expired', 60_000, 'the stage to time out');
  t.ok(expired, 'the stage still times out after the reminder');
  t.equal(receiver.notices.filter((n) => (n as unknown as AccessNotice).type === 'request.reminder').length, 1, 'one reminder per offset');

  // Expiring notice for access given by hand: 4 s before its 8 s end.
  await call('PUT', '/api/access-policies/brief-desk', { displayName: 'Brief desk', durations: { defaultSeconds: 8, expiringNoticeSeconds: 4 }, fulfilment: { mode: 'manual', group: 'Helpdesk' }, stages: [] }, 201);
  const desk = (await post('rex', '/api/requests', { policy: 'brief-desk' })).json().id as string;
  const task = await eventually(async () => (await get('wes', '/api/tasks')).find((x: { requestId: string }) => x.requestId === desk), 60_000, 'the grant task');
  t.equal((await post('wes', `/api/tasks/${task.id}/complete`, { outcome: 'done' })).statusCode, 200);
  const expiring = await notice('request.expiring', desk);
  t.same(expiring.recipients.map((r) => r.userName), ['rex@example.com'], 'the requester is told before the access ends');
  const view = (await get('rex', `/api/requests/${desk}`)) as { accessUntil: string };
  t.equal(expiring.deadline, view.accessUntil, 'with when it ends');
  await eventually(async () => (await get('wes', '/api/tasks')).some((x: { requestId: string; kind: string }) => x.requestId === desk && x.kind === 'revoke'), 60_000, 'the revocation task at the end');
  t.pass('and the revocation task follows at the end');

  // Expiring notice for automatic access: from the grant's end.
  await call('PUT', '/api/access-policies/brief-auto', { entitlement: 'memory/brief', displayName: 'Brief', durations: { defaultSeconds: 8, expiringNoticeSeconds: 4 }, fulfilment: { mode: 'automatic' }, stages: [] }, 201);
  const auto = (await post('rex', '/api/requests', { policy: 'brief-auto' })).json().id as string;
  const autoNotice = await notice('request.expiring', auto);
  const { rows } = await stack.database.db.query<{ valid_until: Date }>('SELECT g.valid_until FROM access_requests r JOIN grants g ON g.id = r.grant_id WHERE r.id = $1', [auto]);
  t.equal(autoNotice.deadline, rows[0]!.valid_until.toISOString(), "the notice gives the grant's end");
  t.same(autoNotice.recipients.map((r) => r.userName), ['rex@example.com']);
  await stack.temporal.client.workflow.getHandle(`access-request:${auto}`).result();
  t.equal((await stack.database.db.query(`SELECT 1 FROM access_notifications WHERE request_id = $1 AND type = 'request.expiring'`, [auto])).rowCount, 1, 'told once; the workflow then ends (the grant ends by itself)');
});
