/**
 * sourceImport: one run per source (id `source-import:<sourceId>`), started by the source's
 * Temporal Schedule or on demand. Reads the source's users page by page (one activity per page),
 * then deletes the directory users the source no longer has. Failures of the source (rate limits,
 * outages) are retried by the activities' policy; a permanent one (bad credentials) fails the run,
 * which changes nothing further: deletions happen only after a complete listing.
 */
import * as wf from '@temporalio/workflow';
import type { Activities } from './activities/index.js';
import type { ImportSummary } from '../core/sources/import.js';

const acts = wf.proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '5 minutes', maximumAttempts: 25 },
});

const PAGES_PER_RUN = 400;

export interface SourceImportInput {
  sourceId: string;
  /** Carried across continue-as-new. */
  resume?: { runId: string; cursor?: string; pages: number };
}

export async function sourceImport(input: SourceImportInput): Promise<ImportSummary> {
  const s = input.sourceId;
  const runId = input.resume?.runId ?? (await acts.startSourceImport.executeWithOptions({ summary: `open an import of source ${s}` }, [{ sourceId: s }])).runId;
  let cursor = input.resume?.cursor;
  let pages = input.resume?.pages ?? 0;
  let inThisRun = 0;
  do {
    if (inThisRun++ >= PAGES_PER_RUN) {
      return await wf.continueAsNew<typeof sourceImport>({ sourceId: s, resume: { runId, pages, ...(cursor ? { cursor } : {}) } });
    }
    pages++;
    const page = await acts.importSourcePage.executeWithOptions({ summary: `import users of ${s}, page ${pages}` }, [{ runId, sourceId: s, ...(cursor ? { cursor } : {}) }]);
    cursor = page.next;
  } while (cursor);
  const summary = await acts.finishSourceImport.executeWithOptions({ summary: `delete the users ${s} no longer has` }, [{ runId, sourceId: s }]);
  wf.setCurrentDetails(`${summary.seen} users read from ${s}: ${summary.created} created, ${summary.updated} updated, ${summary.deleted} deleted, ${summary.conflicts} in conflict`);
  return summary;
}
