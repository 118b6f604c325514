/**
 * An Update that reaches a request's workflow before the workflow has loaded the request (its
 * first activity) waits for it and is then judged like any other. Here no worker runs while the
 * request is made and cancelled, so the cancel arrives in the workflow's very first task, before
 * any handler could have been registered after the load.
 */
import t from 'tap';
import { userBody } from '../helpers/gateway.js';
import { eventually } from '../helpers/temporal.js';
import { startTestStack } from '../helpers/stack.js';
import { createToken } from '../../core/auth/tokens.js';

const { database, gw, temporal } = await startTestStack(t, { idleMs: 1000, worker: false });
const api = gw.call;
const user = async (userName: string) => (await api('POST', '/scim/v2/Users', userBody(userName), 201)).id as string;
const requester = await user('early.rita@example.com');
await user('early.otto@example.com');
const token = (await createToken(database.db, 'personal-early-rita', ['requests'], undefined, requester)).token;
const asRita = async (method: 'GET' | 'POST', url: string, payload?: unknown) => {
  const res = await gw.scim({ method, url, token, ...(payload !== undefined ? { payload: payload as object, headers: { 'content-type': 'application/json' } } : {}) });
  return { status: res.statusCode, body: res.json() };
};
await api('POST', '/scim/v2/Groups', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'], displayName: 'Early desk' }, 201);
await api('PUT', '/api/access-policies/early', { displayName: 'Early', durations: { permanentAllowed: true }, fulfilment: { mode: 'manual', group: 'Early desk' }, stages: [{ approvers: { users: ['early.otto@example.com'] } }] }, 201);

t.test('a cancel that arrives before the workflow has loaded its request is accepted, not refused for want of a handler', async (t) => {
  const created = await asRita('POST', '/api/requests', { policy: 'early' });
  t.equal(created.status, 201, `the request is made: ${created.body.message ?? ''}`);
  const id = created.body.id as string;
  const handle = temporal.client.workflow.getHandle(`access-request:${id}`);
  await eventually(async () => (await handle.describe().catch(() => undefined))?.status.name === 'RUNNING', 30_000, 'the workflow started (no worker yet)');

  const cancelling = asRita('POST', `/api/requests/${id}/cancel`);
  // The cancel waits at the server for the workflow's first task; then a worker takes it.
  await new Promise((r) => setTimeout(r, 1000));
  await temporal.startWorker(database.newPool());
  const cancelled = await cancelling;
  t.equal(cancelled.status, 200, `cancelled: ${JSON.stringify(cancelled.body)}`);
  t.equal(cancelled.body.status, 'cancelled');
  const view = await eventually(async () => {
    const r = await asRita('GET', `/api/requests/${id}`);
    return r.body.status === 'cancelled' ? r.body : undefined;
  }, 30_000, 'the request recorded as cancelled');
  t.equal(view.reason, 'cancelled by the requester');
  t.equal((await handle.result()).status, 'cancelled', 'the workflow ends cancelled');
});
