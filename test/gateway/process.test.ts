/**
 * The production processes refuse bad configuration and an unreachable database with one clear
 * line and a non-zero exit, not a stack trace.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { createTestDatabase } from '../helpers/db.js';

function runProcess(file: string, env: Record<string, string>): Promise<{ code: number | null; stderr: string; stdout: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', file],
      { env: { PATH: process.env.PATH ?? '', ...env }, timeout: 60_000 },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const GOOD = { DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/postgres', TEMPORAL_ADDRESS: '127.0.0.1:7233' };

for (const file of ['gateway/server.ts', 'workflows/worker.ts']) {
  t.test(`${file}: a bad value exits non-zero naming the variable`, async (t) => {
    const res = await runProcess(file, { ...GOOD, LOG_LEVEL: 'loud' });
    t.equal(res.code, 78);
    t.equal(res.stderr.trim(), 'configuration error: LOG_LEVEL: must be one of fatal, error, warn, info, debug, trace, silent, got "loud"');
  });

  t.test(`${file}: a missing DATABASE_URL is named`, async (t) => {
    const res = await runProcess(file, { TEMPORAL_ADDRESS: GOOD.TEMPORAL_ADDRESS });
    t.equal(res.code, 78);
    t.match(res.stderr, /^configuration error: DATABASE_URL: is required/);
  });

  t.test(`${file}: unreachable PostgreSQL is one clear line`, async (t) => {
    const res = await runProcess(file, { ...GOOD, DATABASE_URL: 'postgres://scim:hunter2@127.0.0.1:1/scim' });
    t.equal(res.code, 1);
    const text = res.stderr + res.stdout;
    t.match(text, /cannot reach PostgreSQL at postgres:\/\/scim:\*\*\*@127\.0\.0\.1:1\/scim: .*ECONNREFUSED/);
    t.notMatch(text, /hunter2/, 'the password is not printed');
    t.notMatch(text, /\n\s+at /, 'no stack trace');
  });
}

t.test('gateway: PORT out of range', async (t) => {
  const res = await runProcess('gateway/server.ts', { ...GOOD, PORT: '70000' });
  t.equal(res.code, 78);
  t.equal(res.stderr.trim(), 'configuration error: PORT: must be between 0 and 65535, got 70000');
});

t.test('gateway: an invalid PROVISIONING_FILE stops start-up listing every problem', async (t) => {
  const database = await createTestDatabase(t);
  const dir = mkdtempSync(join(tmpdir(), 'scimgw-prov-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'provisioning.yaml');
  writeFileSync(file, 'connectors:\n  - id: hooks\n    type: webhook\n    config: { url: "https://hooks.example", secret: plain-text-secret }\n');
  const res = await runProcess('gateway/server.ts', { DATABASE_URL: database.url, TEMPORAL_ADDRESS: '127.0.0.1:1', PORT: '0', PROVISIONING_FILE: file });
  t.equal(res.code, 1);
  t.match(res.stderr, /provisioning file .*provisioning\.yaml/);
  t.match(res.stderr, 'connectors[0].config.secret');
  t.notMatch(res.stderr, 'plain-text-secret', 'the secret is not echoed');
  t.notMatch(res.stderr, /\n\s+at /, 'no stack trace');
});
