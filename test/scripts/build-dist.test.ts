/**
 * The production build (`npm run build:dist`, what the Dockerfile runs): the compiled gateway and
 * worker run with plain `node`, no TypeScript loader, and the worker runs workflows from the
 * bundle made at build time (the workflow sources are removed from the output to prove it).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { freePort } from '../../scripts/dev-server.js';
import { createTestDatabase } from '../helpers/db.js';
import { eventually, testTemporal } from '../helpers/temporal.js';

const out = mkdtempSync(join(tmpdir(), 'scimgw-dist-'));
t.teardown(() => rmSync(out, { recursive: true, force: true }));

t.test('build:dist compiles everything and bundles the workflows', async (t) => {
  const res = await new Promise<{ code: number; stderr: string }>((resolve) =>
    execFile(process.execPath, ['--import', 'tsx', 'scripts/build-dist.ts', '--out', out], { timeout: 240_000 }, (err, _stdout, stderr) =>
      resolve({ code: err ? 1 : 0, stderr }),
    ),
  );
  t.equal(res.code, 0, res.stderr);
  for (const file of ['gateway/server.js', 'workflows/worker.js', 'workflows/workflow-bundle.js', 'scripts/token.js', 'core/db/migrations/1732170000000_foundation.sql']) {
    t.ok(existsSync(join(out, file)), `${file} is in the build`);
  }
});

t.test('the compiled gateway and worker provision a user with plain node', async (t) => {
  // Without the workflow sources, only the prebuilt bundle can run the workflows.
  rmSync(join(out, 'workflows', 'workflows.js'));
  const database = await createTestDatabase(t);
  const temporal = await testTemporal(t);
  const port = await freePort();
  const env = {
    PATH: process.env.PATH ?? '',
    DATABASE_URL: database.url,
    TEMPORAL_ADDRESS: temporal.address,
    TEMPORAL_TASK_QUEUE: temporal.taskQueue,
    PORT: String(port),
    HOST: '127.0.0.1',
    SCIM_TOKEN: 'dist-test-token-0123456789',
    LOG_LEVEL: 'warn',
    USER_SYNC_IDLE_MS: '500',
    USER_SYNC_DEBOUNCE_MS: '0',
  };
  const children: ChildProcess[] = [];
  const run = (file: string) => {
    // No --import: plain node, as the container runs it.
    const child = spawn(process.execPath, [join(out, file)], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    children.push(child);
    return () => stderr;
  };
  t.teardown(() => children.forEach((c) => c.kill('SIGKILL')));
  const gatewayErr = run('gateway/server.js');
  const workerErr = run('workflows/worker.js');

  const base = `http://127.0.0.1:${port}`;
  await eventually(() => fetch(`${base}/healthz`).then((r) => r.ok, () => false), 60_000, `the gateway to answer (${gatewayErr()})`);
  const created = await fetch(`${base}/scim/v2/Users`, {
    method: 'POST',
    headers: { authorization: `Bearer ${env.SCIM_TOKEN}`, 'content-type': 'application/scim+json' },
    body: JSON.stringify({ schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], userName: 'dist@example.com' }),
  });
  t.equal(created.status, 201);
  const { id } = (await created.json()) as { id: string };
  const handle = temporal.client.workflow.getHandle(`user-sync:${id}`);
  await eventually(
    async () => {
      const history = await handle.fetchHistory().catch(() => undefined);
      return history?.events?.some((e) => e.workflowTaskCompletedEventAttributes);
    },
    60_000,
    `the compiled worker to run user-sync:${id} (${workerErr()})`,
  );
  t.pass('the workflow ran on the compiled worker');
  for (const c of children) c.kill('SIGTERM');
  await Promise.all(children.map((c) => new Promise((r) => (c.exitCode !== null ? r(null) : c.once('exit', r)))));
  t.notMatch(workerErr(), /Error|error/, 'the worker logged no error');
});
