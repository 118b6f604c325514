import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { findTemporalCli } from '../../scripts/temporal-cli.js';

t.test('TEMPORAL_CLI_PATH comes first, then PATH', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'scimgw-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const fake = join(dir, 'temporal');
  writeFileSync(fake, '#!/bin/sh\n');
  chmodSync(fake, 0o755);
  const saved = { cli: process.env.TEMPORAL_CLI_PATH, path: process.env.PATH };
  t.teardown(() => {
    if (saved.cli === undefined) delete process.env.TEMPORAL_CLI_PATH;
    else process.env.TEMPORAL_CLI_PATH = saved.cli;
    process.env.PATH = saved.path;
  });

  process.env.TEMPORAL_CLI_PATH = fake;
  t.equal(findTemporalCli({ build: false }), fake);

  process.env.TEMPORAL_CLI_PATH = join(dir, 'missing');
  t.throws(() => findTemporalCli({ build: false }), /is not an executable file/);

  delete process.env.TEMPORAL_CLI_PATH;
  process.env.PATH = `${dir}:${saved.path ?? ''}`;
  t.equal(findTemporalCli({ build: false }), fake, 'found on PATH');
});
