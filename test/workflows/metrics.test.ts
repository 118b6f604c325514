/**
 * Worker metrics: provisioning steps by connector and outcome, connector call latency and errors,
 * and reconcile drift, recorded around the real activities on the real Temporal dev server; and a
 * worker process serving them on WORKER_METRICS_ADDRESS next to the SDK's own metrics on
 * TEMPORAL_METRICS_ADDRESS.
 */
import { spawn } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { NativeConnection } from '@temporalio/worker';
import { userBody } from '../helpers/gateway.js';
import { eventually, workflowBundle } from '../helpers/temporal.js';
import { startTestStack } from '../helpers/stack.js';
import { sample } from '../helpers/metrics.js';
import { memoryTarget } from '../fixtures/memory-connector.js';
import { createWorker } from '../../workflows/worker.js';
import { serveMetrics, WorkerMetrics } from '../../workflows/activities/metrics.js';
import { freePort } from '../../scripts/dev-server.js';

const PLUGIN = fileURLToPath(new URL('../fixtures/memory-connector.ts', import.meta.url));

t.test('steps, connector calls and drift are counted by connector and outcome', async (t) => {
  const { database, temporal, gw } = await startTestStack(t, { idleMs: 1000, worker: false });
  const metrics = new WorkerMetrics({ processMetrics: false });
  const server = await serveMetrics(metrics.registry, '127.0.0.1:0');
  t.teardown(() => new Promise((resolve) => server.close(resolve)));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`;

  const connection = await NativeConnection.connect({ address: temporal.address });
  const bundle = workflowBundle();
  const worker = await createWorker({ connection, namespace: temporal.namespace, taskQueue: temporal.taskQueue, db: database.newPool(), metrics, ...(bundle ? { workflowBundle: bundle } : {}) });
  const running = worker.run();
  t.teardown(async () => {
    worker.shutdown();
    await running;
    await connection.close();
  });

  const ns = `metrics-${temporal.taskQueue}`;
  const good = memoryTarget(ns);
  const broken = memoryTarget(`${ns}-broken`);
  broken.failures.set('createAccount', Array.from({ length: 50 }, () => ({ kind: 'permanent' as const, message: 'token lacks admin:org' })));
  await gw.call('PUT', '/api/connectors/good', { id: 'good', type: PLUGIN, config: { namespace: ns } });
  await gw.call('PUT', '/api/connectors/broken', { id: 'broken', type: PLUGIN, config: { namespace: `${ns}-broken` } });
  await gw.call('POST', '/api/entitlements', { connectorId: 'good', name: 'eng', target: { group: 'eng' } }, 201);
  await gw.call('POST', '/api/entitlements', { connectorId: 'broken', name: 'eng', target: { group: 'eng' } }, 201);
  await gw.call('POST', '/api/rules', { name: 'everyone', condition: 'userName pr', entitlements: ['good/eng', 'broken/eng'] }, 201);

  const alice = await gw.call('POST', '/scim/v2/Users', userBody('metrics.alice@example.com'), 201);
  await eventually(async () => good.groups.get('eng')?.has(`acct-${alice.id}`), 60_000, 'alice in eng in the good target');

  const text = await eventually(async () => {
    const body = await (await fetch(url)).text();
    return (sample(body, 'scimgw_provisioning_steps_total', { connector: 'broken', action: 'createAccount', outcome: 'error' }) ?? 0) >= 1 ? body : undefined;
  }, 60_000, 'the failing step to be counted');
  t.equal(sample(text, 'scimgw_provisioning_steps_total', { connector: 'good', action: 'createAccount', outcome: 'ok' }), 1, 'the account was created once');
  t.equal(sample(text, 'scimgw_provisioning_steps_total', { connector: 'good', action: 'grantEntitlement', outcome: 'ok' }), 1, 'and granted once');
  t.ok((sample(text, 'scimgw_connector_call_errors_total', { connector: 'broken', operation: 'createAccount' }) ?? 0) >= 1, 'connector errors by connector and operation');
  t.equal(sample(text, 'scimgw_connector_call_duration_seconds_count', { connector: 'good', operation: 'createAccount', outcome: 'ok' }), 1, 'call latency histogram');
  t.equal(sample(text, 'scimgw_connector_call_errors_total', { connector: 'good', operation: 'createAccount' }), undefined, 'no error for the good connector');

  good.accounts.set('acct-orphan', { userName: 'orphan@example.com', active: true });
  const dry = await gw.call('POST', '/api/connectors/good/reconcile', { dryRun: true });
  const orphans = dry.drift.find((d: { kind: string }) => d.kind === 'orphanAccount');
  t.ok(orphans, 'the dry run found the orphan account');
  const after = await (await fetch(url)).text();
  t.equal(sample(after, 'scimgw_reconcile_drift_total', { connector: 'good', kind: 'orphanAccount', action: orphans.action }), orphans.count, 'drift counted by connector, kind and action');
  t.ok((sample(after, 'scimgw_connector_call_duration_seconds_count', { connector: 'good', operation: 'listTargetAccounts', outcome: 'ok' }) ?? 0) >= 1, 'reconcile listings are connector calls');
});

t.test('a worker process serves its metrics and the Temporal SDK runtime metrics on their own addresses', async (t) => {
  const { database, temporal } = await startTestStack(t, { idleMs: 1000, worker: false });
  const [ours, sdk] = [await freePort(), await freePort()];
  const child = spawn(process.execPath, ['--import', 'tsx', 'workflows/worker.ts'], {
    env: {
      ...process.env,
      LOG_LEVEL: 'warn',
      DATABASE_URL: database.url,
      TEMPORAL_ADDRESS: temporal.address,
      TEMPORAL_TASK_QUEUE: temporal.taskQueue,
      WORKER_METRICS_ADDRESS: `127.0.0.1:${ours}`,
      TEMPORAL_METRICS_ADDRESS: `127.0.0.1:${sdk}`,
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  process.once('exit', () => child.kill('SIGKILL'));
  t.teardown(() => child.kill('SIGKILL'));

  const worker = await eventually(async () => {
    const res = await fetch(`http://127.0.0.1:${ours}/metrics`);
    return res.ok ? await res.text() : undefined;
  }, 90_000, "the worker's metrics endpoint");
  t.match(worker, /^# TYPE scimgw_provisioning_steps_total counter$/m, 'provisioning steps');
  t.match(worker, /^# TYPE scimgw_connector_call_duration_seconds histogram$/m, 'connector call latency');
  t.match(worker, /^# TYPE scimgw_reconcile_drift_total counter$/m, 'reconcile drift');
  t.match(worker, /^process_cpu_seconds_total /m, 'process metrics');
  t.equal((await fetch(`http://127.0.0.1:${ours}/other`)).status, 404);

  const runtime = await eventually(async () => {
    const res = await fetch(`http://127.0.0.1:${sdk}/metrics`);
    const body = res.ok ? await res.text() : '';
    // Worker metrics appear once the worker polls its task queue.
    return body.includes(`task_queue="${temporal.taskQueue}"`) ? body : undefined;
  }, 60_000, "the SDK runtime's Prometheus exporter to report this worker's task queue");
  t.match(runtime, /^temporal_\w+/m, 'temporal_* metrics');
});
