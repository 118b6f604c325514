/**
 * Logs for people and for collectors: readable lines on a terminal, JSON lines otherwise, and never
 * an activity's task token (the Temporal worker logs one with every failed attempt).
 */
import { Writable } from 'node:stream';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import t from 'tap';
import { logDestination } from '../../core/log-output.js';
import { logTemporalEntry } from '../../workflows/worker.js';

function capture(): { stream: Writable; text: () => string } {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      text += chunk.toString();
      done();
    },
  });
  return { stream, text: () => text };
}

t.test('JSON lines when standard output is not a terminal: every line, whole and in order', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'log-output-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'out.log');
  const destination = logDestination(false, process.stdout, openSync(file, 'w')) as ReturnType<typeof pino.destination>;
  const log = pino({ base: { component: 'gateway' } }, destination);
  // A burst, as under load: the lines logged while a write is in flight go out together.
  for (let i = 0; i < 5000; i++) log.info({ i, url: `/scim/v2/Users?filter=userName eq "user${i}@example.com"` }, 'request completed');
  await new Promise<void>((resolve) => {
    destination.once('close', () => resolve());
    destination.end();
  });
  const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
  t.equal(lines.length, 5000, 'no line lost');
  t.same(
    lines.map((l) => (JSON.parse(l) as { i: number }).i),
    Array.from({ length: 5000 }, (_, i) => i),
    'each line whole JSON, in the order logged',
  );
});

t.test('the lines logged right before process.exit() are written', async (t) => {
  // A child logs a burst and exits at once, as the boot files do after a fatal error.
  const script = [
    `import pino from 'pino';`,
    `import { logDestination } from ${JSON.stringify(fileURLToPath(new URL('../../core/log-output.ts', import.meta.url)))};`,
    `const log = pino(logDestination(false));`,
    `for (let i = 0; i < 2000; i++) log.info({ i }, 'line');`,
    `log.fatal('database unreachable');`,
    `process.exit(1);`,
  ].join('\n');
  let out = '';
  try {
    execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', cwd: fileURLToPath(new URL('../..', import.meta.url)) });
  } catch (err) {
    out = (err as { stdout: string; status: number }).stdout;
    t.equal((err as { status: number }).status, 1, 'the exit code the child chose');
  }
  const lines = out.trimEnd().split('\n');
  t.equal(lines.length, 2001, 'every line reached standard output');
  t.match(JSON.parse(lines.at(-1)!), { level: 60, msg: 'database unreachable' }, 'the last one included');
});

t.test('readable lines on a terminal', async (t) => {
  const out = capture();
  const log = pino({ base: { component: 'worker' } }, logDestination(true, out.stream));
  log.info({ taskQueue: 'scim-gateway' }, 'worker started');
  log.info('webpack compiled\n  workflow bundle 1.2 MB');
  const text = out.text();
  t.match(text, /INFO.*worker started/, `level and message on one line: ${text}`);
  t.match(text, /taskQueue: "scim-gateway"/, `fields as name: value: ${text}`);
  t.match(text, /webpack compiled\n\s+workflow bundle/, 'a multi-line message keeps its lines');
  t.throws(() => JSON.parse(text.split('\n')[0]!), 'not JSON');
});

t.test("the Temporal worker's log entries lose the task token", async (t) => {
  const out = capture();
  const log = pino({ base: null }, out.stream);
  const token = 'CiQ2ZjYxYjQ4Ni1lNzg4LTQ5ZjUtOGY2Ni1hYTk5YzM2ZjUwZjASHHVzZXItc3luYzo0YjM4YTc2ZC1hZDNhLTQ4OWMtOTdhMy1jYTM0';
  logTemporalEntry(log, {
    level: 'WARN',
    message: 'Activity failed',
    meta: {
      taskToken: token,
      activityType: 'revokeEntitlement',
      attempt: 9,
      workflowId: 'user-sync:4b38a76d',
      error: new Error('demo: revokeEntitlement: GET /Groups failed: connect ECONNREFUSED 127.0.0.1:8090'),
    },
  });
  const entry = JSON.parse(out.text()) as Record<string, unknown>;
  t.equal(entry.msg, 'Activity failed');
  t.equal(entry.level, 40, 'a warning');
  t.notOk('taskToken' in entry, `no taskToken field: ${out.text()}`);
  t.notMatch(out.text(), token, 'the token appears nowhere');
  t.match(entry, { activityType: 'revokeEntitlement', attempt: 9, workflowId: 'user-sync:4b38a76d', component: 'temporal' }, 'what helps a reader stays');
  t.equal(entry.error, 'demo: revokeEntitlement: GET /Groups failed: connect ECONNREFUSED 127.0.0.1:8090', "the error's message, not {}");
});
