/**
 * The smallest workflow a decision could be: an Update whose handler records the value with a local
 * activity and answers. `npm run bench:access` measures Updates to it as the Temporal floor under a
 * decision (the same dev server, worker process and callers), so the report can say how much of a
 * decision's time is Temporal's and how much the request workflow's own.
 */
import * as wf from '@temporalio/workflow';

export const benchTouch = wf.defineUpdate<number, [number]>('benchTouch');

const { benchRecord } = wf.proxyLocalActivities<{ benchRecord(n: number): Promise<number> }>({ startToCloseTimeout: '10 seconds' });

export async function benchUpdateFloor(): Promise<void> {
  let total = 0;
  let done = false;
  wf.setHandler(benchTouch, async (n) => {
    total += await benchRecord(n);
    if (n < 0) done = true;
    return total;
  });
  await wf.condition(() => done);
}
