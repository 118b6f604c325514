/**
 * The demo SCIM target of the README walk-through: stopping and starting it again (to watch the
 * gateway retry) keeps its URL and what it holds, and it reads its token from the one variable the
 * connector's secret reference names.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';

const dataDir = mkdtempSync(join(tmpdir(), 'demo-target-'));
t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));

async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** Starts the script and answers once it printed its base URL. */
async function start(env: Record<string, string>): Promise<{ child: ChildProcess; baseUrl: string; output: () => string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/demo-scim-target.ts'], {
    env: { PATH: process.env.PATH ?? '', DATA_DIR: dataDir, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const baseUrl = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', () => {
      const m = /SCIM target: (\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`the demo target exited (${code}): ${out}`)));
  });
  return { child, baseUrl, output: () => out };
}

async function stop(child: ChildProcess): Promise<void> {
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

t.test('a fixed port and data that survive a restart; one token variable', async (t) => {
  const port = await freePort();
  const env = { DEMO_TARGET_PORT: String(port), DEMO_TARGET_TOKEN: 'walk-through-token' };
  const first = await start(env);
  t.equal(first.baseUrl, `http://127.0.0.1:${port}/scim/v2`, 'listens on DEMO_TARGET_PORT');
  const headers = { authorization: 'Bearer walk-through-token', 'content-type': 'application/scim+json' };
  const created = await fetch(`${first.baseUrl}/Users`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], userName: 'ada@example.com' }),
  });
  t.equal(created.status, 201, 'DEMO_TARGET_TOKEN is the token it accepts');
  const { id } = (await created.json()) as { id: string };
  await stop(first.child);

  const second = await start(env);
  t.equal(second.baseUrl, first.baseUrl, 'the same URL after a restart, so the connector keeps working');
  t.match(second.output(), /users: ada@example\.com/, 'it says what it holds at start-up');
  const fetched = await fetch(`${second.baseUrl}/Users/${id}`, { headers });
  t.equal(fetched.status, 200, 'the user created before the restart is still there');
  t.match(await fetched.json(), { id, userName: 'ada@example.com' });
  const wrong = await fetch(`${second.baseUrl}/Users`, { headers: { authorization: 'Bearer demo-target-token' } });
  t.equal(wrong.status, 401, 'another token is refused');
  await stop(second.child);
});

t.test('a bad DEMO_TARGET_PORT is refused with a message naming it', async (t) => {
  await t.rejects(start({ DEMO_TARGET_PORT: 'eighty' }), /DEMO_TARGET_PORT must be a port number/);
});
