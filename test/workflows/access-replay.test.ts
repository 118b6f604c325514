/**
 * Replay safety of the accessRequest workflow: histories recorded by the workflow as it was before
 * decisions recorded what follows (test/fixtures/histories/access-request-v0-*.pb: the History
 * protobuf as the Temporal API serves it, fetched from the dev server after each run) replay without a nondeterminism error under today's code: a
 * request approved in one stage, one approved in two, one rejected, and one made under the old code
 * and decided under the new one (its history holds both).
 */
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from '@temporalio/worker';
import proto from '@temporalio/proto';
import { WORKFLOWS_PATH } from '../../workflows/worker.js';
import { workflowBundle } from '../helpers/temporal.js';

const dir = fileURLToPath(new URL('../fixtures/histories/', import.meta.url));
const files = readdirSync(dir).filter((f) => f.startsWith('access-request-') && f.endsWith('.pb'));
const bundle = workflowBundle();

t.ok(files.length >= 4, `histories to replay: ${files.join(', ')}`);
for (const file of files) {
  t.test(file, async (t) => {
    const history = proto.temporal.api.history.v1.History.decode(readFileSync(`${dir}${file}`));
    await t.resolves(
      Worker.runReplayHistory({ ...(bundle ? { workflowBundle: bundle } : { workflowsPath: WORKFLOWS_PATH }), replayName: file }, history, `access-request:${file}`),
      'replays under the current code',
    );
  });
}
