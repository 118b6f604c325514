/**
 * Replay safety of the userSync workflow: histories recorded by the workflow as it was when it
 * planned and recorded through regular activities (test/fixtures/histories/user-sync-v0-*.pb: the
 * History protobuf as the Temporal API serves it, fetched from the dev server after each run)
 * replay without a nondeterminism error under today's code, which runs those steps as local
 * activities: a joiner granted an entitlement, and one whose grant failed for good.
 */
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from '@temporalio/worker';
import proto from '@temporalio/proto';
import { WORKFLOWS_PATH } from '../../workflows/worker.js';
import { workflowBundle } from '../helpers/temporal.js';

const dir = fileURLToPath(new URL('../fixtures/histories/', import.meta.url));
const files = readdirSync(dir).filter((f) => f.startsWith('user-sync-') && f.endsWith('.pb'));
const bundle = workflowBundle();

t.ok(files.length >= 2, `histories to replay: ${files.join(', ')}`);
for (const file of files) {
  t.test(file, async (t) => {
    const history = proto.temporal.api.history.v1.History.decode(readFileSync(`${dir}${file}`));
    const types = (history.events ?? []).map((e) => e.activityTaskScheduledEventAttributes?.activityType?.name).filter(Boolean);
    t.ok(types.includes('planUserSync'), `the history plans through a regular activity: ${types.join(', ')}`);
    await t.resolves(
      Worker.runReplayHistory({ ...(bundle ? { workflowBundle: bundle } : { workflowsPath: WORKFLOWS_PATH }), replayName: file }, history, `user-sync:${file}`),
      'replays under the current code',
    );
  });
}
