/**
 * testConnection: the admin API's "test connection" for a connector. A workflow (id
 * `test-connection:<connectorId>`) so that, like every call to a target, it runs in a worker
 * through an activity; it does not retry, because the answer is wanted now.
 */
import * as wf from '@temporalio/workflow';
import type { Activities } from './activities/index.js';

const { validateConnector } = wf.proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { maximumAttempts: 1 },
});

export interface TestConnectionResult {
  ok: boolean;
  /** Why it failed, as the connector put it. */
  error?: string;
  /** transient: try again later; permanent: fix the configuration or permissions. */
  kind?: 'transient' | 'permanent';
}

export async function testConnection(input: { connectorId: string }): Promise<TestConnectionResult> {
  try {
    await validateConnector(input);
    return { ok: true };
  } catch (err) {
    const cause = err instanceof wf.ActivityFailure ? err.cause : err;
    const message = cause instanceof Error ? cause.message : String(cause);
    const permanent = cause instanceof wf.ApplicationFailure && cause.nonRetryable;
    return { ok: false, error: message, kind: permanent ? 'permanent' : 'transient' };
  }
}
