/**
 * Activities of the sourceImport workflow (../source-import.ts): open a run, import one page of the
 * source's users, finish (delete the users the source no longer has). The logic is in core/sources/.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import { PermanentError } from '../../connectors/index.js';
import type { Db } from '../../core/db/pool.js';
import { finishImport, importPage, openAuth0Source, startImport, type ImportSummary } from '../../core/sources/import.js';

export function sourceActivities(db: Db) {
  return {
    /** Opens an import run of one source. */
    async startSourceImport({ sourceId }: { sourceId: string }): Promise<{ runId: string }> {
      return await startImport(db, sourceId, Context.current().info.workflowExecution?.workflowId);
    },
    /** Reads one page of the source's users into the directory. */
    async importSourcePage(input: { runId: string; sourceId: string; cursor?: string }): Promise<{ next?: string; count: number }> {
      try {
        return await importPage(db, await openAuth0Source(db, input.sourceId), input);
      } catch (err) {
        // Bad credentials or configuration: retrying does not help, the run fails with the reason.
        if (err instanceof PermanentError) throw ApplicationFailure.create({ message: err.message, type: `PermanentError:${String(err.kind)}`, nonRetryable: true });
        throw err;
      }
    },
    /** Deletes the users the source no longer has and closes the run. */
    async finishSourceImport(input: { runId: string; sourceId: string }): Promise<ImportSummary> {
      try {
        return await finishImport(db, input);
      } catch (err) {
        if (err instanceof PermanentError) throw ApplicationFailure.create({ message: err.message, type: `PermanentError:${String(err.kind)}`, nonRetryable: true });
        throw err;
      }
    },
  };
}
