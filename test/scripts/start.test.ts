/**
 * `npm start` on embedded defaults, as a user runs it: no DATABASE_URL, no TEMPORAL_ADDRESS. It must
 * answer SCIM, turn a POST into a workflow, and leave no process behind after Ctrl-C.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { Client, Connection } from '@temporalio/client';
import { freePort } from '../../scripts/dev-server.js';
import { eventually } from '../helpers/temporal.js';

function processesMentioning(text: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(text)) pids.push(Number(entry));
    } catch {
      // the process ended while we looked
    }
  }
  return pids;
}

t.test('npm start: embedded PostgreSQL + Temporal dev server + worker + gateway, and a clean Ctrl-C', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'scimgw-start-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const [port, temporalPort, uiPort] = [await freePort(), await freePort(), await freePort()];
  const child = spawn('npm', ['start'], {
    env: {
      ...process.env,
      DATABASE_URL: '',
      TEMPORAL_ADDRESS: '',
      DATA_DIR: dataDir,
      PORT: String(port),
      HOST: '127.0.0.1',
      TEMPORAL_DEV_PORT: String(temporalPort),
      TEMPORAL_DEV_UI_PORT: String(uiPort),
      SCIM_TOKEN: 'start-test-secret',
      LOG_LEVEL: 'warn',
    },
    detached: true, // its own process group, so the test can send Ctrl-C the way a terminal does
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: string | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
  t.teardown(() => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  });

  const base = await eventually(async () => /SCIM base URL\s+(\S+)/.exec(out)?.[1], 120_000, `the start banner; output so far:\n${out}`);
  t.equal(base, `http://127.0.0.1:${port}/scim/v2`);
  t.match(out, `Temporal UI   http://127.0.0.1:${uiPort}`);
  t.match(out, 'Swagger UI');
  t.notMatch(out, 'start-test-secret', 'the token is never printed');

  const spc = await fetch(`${base}/ServiceProviderConfig`);
  t.equal(spc.status, 200);
  t.match(spc.headers.get('content-type'), /application\/scim\+json/);

  const created = await fetch(`${base}/Users`, {
    method: 'POST',
    headers: { authorization: 'Bearer start-test-secret', 'content-type': 'application/scim+json' },
    body: JSON.stringify({ schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], userName: 'first.user@example.com' }),
  });
  t.equal(created.status, 201);
  const user = (await created.json()) as { id: string };

  // With no IdP configured, npm start's console offers the marked local sign-in (and the banner says so).
  t.match(out, `Console       http://127.0.0.1:${port}/console (local sign-in: no CONSOLE_OIDC_ISSUER set)`);
  const signIn = await fetch(`http://127.0.0.1:${port}/console`);
  t.equal(signIn.status, 200);
  const signInPage = await signIn.text();
  t.match(signInPage, 'Local sign-in (no identity provider configured)');
  t.match(signInPage, 'first.user@example.com', 'any directory user can be chosen');

  const connection = await Connection.connect({ address: `127.0.0.1:${temporalPort}` });
  const client = new Client({ connection });
  const desc = await eventually(() => client.workflow.getHandle(`user-sync:${user.id}`).describe(), 30_000, 'the workflow');
  t.equal(desc.type, 'userSync');
  t.same(desc.memo, { userName: 'first.user@example.com' });
  await connection.close();

  const ui = await fetch(`http://127.0.0.1:${uiPort}/`);
  t.equal(ui.status, 200, 'the Temporal Web UI answers');

  process.kill(-child.pid!, 'SIGINT');
  const { code, signal } = await exited;
  // npm itself re-raises SIGINT after its child exits, as shells expect of Ctrl-C.
  t.ok(code === 0 || signal === 'SIGINT', `npm start ends on Ctrl-C (code ${code}, signal ${signal})`);
  t.notMatch(out, /"level":(50|60)/, `no errors logged during start or shutdown; output:\n${out}`);
  await eventually(async () => processesMentioning(dataDir).length === 0, 10_000, 'every child process to exit');
  t.same(processesMentioning(dataDir), [], 'no orphan processes');
});
