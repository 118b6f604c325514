/**
 * Logs for people and for collectors: readable lines on a terminal, JSON lines otherwise, and never
 * an activity's task token (the Temporal worker logs one with every failed attempt).
 */
import { Writable } from 'node:stream';
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

t.test('JSON lines when standard output is not a terminal', async (t) => {
  t.equal(logDestination(false), undefined, "pino's own JSON destination");
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
