/**
 * What the workflows share to call activities that read well in the Temporal UI: every call
 * carries a summary made from its arguments, and short bookkeeping on the gateway's database is
 * retried the same way everywhere.
 */
import * as wf from '@temporalio/workflow';
import type { Activities } from './activities/index.js';

/** Short reads and writes on the gateway's database. */
export const RECORDING: wf.ActivityOptions = {
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
};

export type Activity<K extends keyof Activities> = (...args: Parameters<Activities[K]>) => ReturnType<Activities[K]>;

/**
 * Activity `name` whose every call carries a summary (Temporal's user metadata, shown beside the
 * activity in the Temporal UI) made from its arguments.
 */
export function summarized<K extends keyof Activities>(name: K, options: wf.ActivityOptions, summary: (...args: Parameters<Activities[K]>) => string): Activity<K> {
  return (...args) => (wf.proxyActivities<Activities>({ ...options, summary: summary(...args) })[name] as unknown as Activity<K>)(...args);
}
