/**
 * Deliveries as connectors see them in the worker: ConnectorRuntime gives each instance a
 * `ctx.deliver` bound to its own connector id, or none when deliveries are off; and on the real
 * Temporal dev server, a connector's createAccount step delivers a file the user can download once.
 */
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { NativeConnection } from '@temporalio/worker';
import { loadWorkerConfig } from '../../../core/config.js';
import { deliveryFactory } from '../../../core/delivery/index.js';
import { PermanentError } from '@scim-gateway/connector-sdk';
import { ConnectorRuntime } from '../../../workflows/activities/connector-runtime.js';
import { createWorker } from '../../../workflows/worker.js';
import { startTestStack } from '../../helpers/stack.js';
import { eventually, workflowBundle } from '../../helpers/temporal.js';
import { userBody } from '../../helpers/gateway.js';
import { startNoticeReceiver } from './notice-receiver.js';

const PLUGIN = fileURLToPath(new URL('../../fixtures/delivering-connector.ts', import.meta.url));
const SECRET = 'worker-delivery-secret-0123456789';

const { database, temporal, gw } = await startTestStack(t, { idleMs: 1000, worker: false });
const receiver = await startNoticeReceiver(t, SECRET);
const cfg = loadWorkerConfig({ PUBLIC_URL: 'https://gw.example.test', DELIVERY_WEBHOOK_URL: receiver.url, DELIVERY_WEBHOOK_SECRET: SECRET });
const db = database.newPool(5);
const tokenOf = (url: string) => url.split('/downloads/')[1]!;

await gw.call('PUT', '/api/connectors/alpha', { id: 'alpha', type: PLUGIN, config: { label: 'alpha profile' } });
await gw.call('PUT', '/api/connectors/beta', { id: 'beta', type: PLUGIN, config: { label: 'beta profile' } });

t.test('ConnectorRuntime gives each connector a deliver bound to its own id', async (t) => {
  const user = await gw.call('POST', '/scim/v2/Users', userBody('erin@example.com'), 201);
  const runtime = new ConnectorRuntime(db, undefined, deliveryFactory(cfg, db));
  t.teardown(() => runtime.close());
  const input = { userId: user.id, userName: 'erin@example.com', active: true, attributes: {} };

  for (const id of ['alpha', 'beta']) {
    const { instance } = await runtime.get(id);
    t.same(await instance.createAccount!(input), { status: 'applied', remoteId: `delivered-${user.id}` });
    const notice = receiver.notices.at(-1)!;
    t.equal(notice.connectorId, id, `${id}: the notice names the connector that delivered`);
    const { rows } = await db.query<{ connector_id: string }>('SELECT connector_id FROM deliveries WHERE id = $1', [notice.id]);
    t.equal(rows[0]!.connector_id, id, `${id}: the delivery is recorded under it`);
    const { rows: audit } = await db.query<{ actor: string }>(`SELECT actor FROM audit_events WHERE action = 'delivery.created' AND after->>'deliveryId' = $1`, [notice.id]);
    t.equal(audit[0]!.actor, `connector:${id}`, `${id}: and audited as it`);
    const res = await gw.app.inject({ method: 'GET', url: `/downloads/${tokenOf(notice.url)}` });
    t.equal(res.body, `${id} profile for ${user.id}`, `${id}: the link serves what it delivered`);
  }

  const off = new ConnectorRuntime(db);
  t.teardown(() => off.close());
  const err = await (await off.get('alpha')).instance.createAccount!(input).catch((e: unknown) => e);
  t.ok(err instanceof PermanentError && err.kind === 'invalidConfig', 'without deliveries configured ctx.deliver is undefined, and the connector says what to set');
  t.match((err as Error).message, 'DELIVERY_WEBHOOK_URL');
});

t.test('on Temporal: a createAccount step delivers the file, which downloads once', async (t) => {
  const connection = await NativeConnection.connect({ address: temporal.address });
  const bundle = workflowBundle();
  const worker = await createWorker({ connection, namespace: temporal.namespace, taskQueue: temporal.taskQueue, db, deliverFor: deliveryFactory(cfg, db), ...(bundle ? { workflowBundle: bundle } : {}) });
  const running = worker.run();
  t.teardown(async () => {
    worker.shutdown();
    await running;
    await connection.close();
  });

  await gw.call('POST', '/api/entitlements', { connectorId: 'alpha', name: 'vpn', target: {} }, 201);
  await gw.call('POST', '/api/rules', { name: 'vpn-for-frank', condition: 'userName eq "frank@example.com"', entitlements: ['alpha/vpn'] }, 201);
  // The receiver answers 503 once: the activity fails transiently and Temporal retries it.
  receiver.failNext.push({ status: 503 });
  const frank = await gw.call('POST', '/scim/v2/Users', userBody('frank@example.com'), 201);

  const notice = await eventually(async () => receiver.notices.find((n) => n.userId === frank.id), 60_000, "frank's notice");
  t.equal(notice.connectorId, 'alpha');
  const res = await gw.app.inject({ method: 'GET', url: `/downloads/${tokenOf(notice.url)}` });
  t.equal(res.statusCode, 200);
  t.equal(res.body, `alpha profile for ${frank.id}`);
  t.equal((await gw.app.inject({ method: 'GET', url: `/downloads/${tokenOf(notice.url)}` })).statusCode, 410, 'once only');

  const list = await gw.call('GET', `/api/users/${frank.id}/deliveries`);
  t.same(
    list.map((d: { state: string }) => d.state),
    ['downloaded', 'undelivered'],
    'the attempt whose notice failed was withdrawn; the retry delivered the link that was used',
  );
  const status = await eventually(async () => {
    const s = await gw.call('GET', `/api/users/${frank.id}/provisioning`);
    return s.find((a: { connectorId: string; state: string }) => a.connectorId === 'alpha' && a.state === 'active');
  }, 30_000, "frank's alpha account");
  t.equal(status.remoteId, `delivered-${frank.id}`);
});
