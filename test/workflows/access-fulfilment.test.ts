/**
 * Approved access is reported as in place as soon as the requester's userSync has provisioned it:
 * userSync tells the request's workflow after the round (the `fulfilmentProgress` signal), so the
 * request does not wait for its next look. Here the fallback look is ten minutes away, and the
 * target answers slowly, so the request's first look finds the access still on its way.
 */
import t from 'tap';
import { localActivities } from '../helpers/history.js';
import { userBody } from '../helpers/gateway.js';
import { eventually } from '../helpers/temporal.js';
import { startTestStack } from '../helpers/stack.js';
import { startScimmyServer } from '../connectors/scim/scimmy-server.js';
import { createToken } from '../../core/auth/tokens.js';

const { database, gw, temporal } = await startTestStack(t, { idleMs: 1000, env: { ACCESS_FULFILMENT_CHECK_MS: '600000', ACCESS_FULFILMENT_CHECK_MAX_MS: '600000' } });
const target = await startScimmyServer({ token: 'fulfilment-target-token' });
t.teardown(() => target.close());
process.env.FULFILMENT_TARGET_TOKEN = 'fulfilment-target-token';
const api = gw.call;

await api('PUT', '/api/connectors/target', { id: 'target', type: 'scim', config: { baseUrl: target.baseUrl, token: 'env:FULFILMENT_TARGET_TOKEN' } }, 200);
await api('POST', '/api/entitlements', { connectorId: 'target', name: 'ops', target: { group: 'Ops', create: true } }, 201);
const user = async (userName: string) => (await api('POST', '/scim/v2/Users', userBody(userName), 201)).id as string;
const requester = await user('rita@example.com');
const approver = await user('otto@example.com');
const tokens = {
  rita: (await createToken(database.db, 'personal-rita', ['requests'], undefined, requester)).token,
  otto: (await createToken(database.db, 'personal-otto', ['requests'], undefined, approver)).token,
};
const as = async (who: keyof typeof tokens, method: 'GET' | 'POST', url: string, payload?: unknown) => {
  const res = await gw.scim({ method, url, token: tokens[who], ...(payload !== undefined ? { payload: payload as object, headers: { 'content-type': 'application/json' } } : {}) });
  return { status: res.statusCode, body: res.json() };
};
await api('PUT', '/api/access-policies/ops', { entitlement: 'target/ops', displayName: 'Ops', durations: { permanentAllowed: true }, fulfilment: { mode: 'automatic' }, stages: [{ approvers: { users: ['otto@example.com'] } }] }, 201);

t.test('the request is fulfilled when userSync has provisioned it, not at its next look', async (t) => {
  const created = await as('rita', 'POST', '/api/requests', { policy: 'ops' });
  t.equal(created.status, 201, `the request is created: ${created.body.message ?? ''}`);
  const id = created.body.id as string;
  await eventually(async () => (await as('otto', 'GET', '/api/approvals')).body.some((x: { id: string }) => x.id === id), 30_000, 'the request awaits its approver');

  // The target takes its time: the request's first look after approval finds nothing yet.
  target.failNext(3, { status: 0, delayMs: 3000 });
  const decided = await as('otto', 'POST', `/api/requests/${id}/decisions`, { decision: 'approve' });
  t.equal(decided.status, 200, `approved: ${decided.body.message ?? ''}`);

  const done = await eventually(async () => {
    const r = await as('rita', 'GET', `/api/requests/${id}`);
    return r.body.status === 'fulfilled' || r.body.status === 'failed' ? r.body : undefined;
  }, 60_000, 'the request to be fulfilled well before its next look (ten minutes)');
  t.equal(done.status, 'fulfilled', done.reason);

  // The history shows how: a first look (with the approval, which made the grant) that found the
  // access on its way, then word from userSync, then a look (a local activity) that found it in place.
  const history = await temporal.client.workflow.getHandle(`access-request:${id}`).fetchHistory();
  const events = history.events ?? [];
  const local = localActivities(events);
  const first = local.find((l) => l.type === 'recordDecisionAndOutcome');
  t.match(first?.result, { fulfilment: { state: 'waiting' } }, 'the first look, with the approval, found the access on its way');
  const told = events.findIndex((e) => e.workflowExecutionSignaledEventAttributes?.signalName === 'fulfilmentProgress');
  t.ok(told >= 0, 'userSync told the request');
  const looks = local.filter((l) => l.type === 'checkFulfilment');
  t.ok(looks.length >= 1, `looked again after the word (${looks.length} looks)`);
  t.same(looks.at(-1)?.result, { state: 'done' }, 'and found it in place');
});
