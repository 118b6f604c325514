/**
 * The gateway's connection to Temporal. The gateway must start and accept SCIM writes while
 * Temporal is down (the outbox holds the work), so the connection is made on first use and made
 * again after a failure, instead of once at boot.
 */
import { Client, Connection } from '@temporalio/client';
import { ensureSearchAttributes } from '../workflows/client.js';

export class TemporalAccess {
  private pending: Promise<Client> | undefined;
  private connection: Connection | undefined;

  constructor(
    readonly address: string,
    readonly namespace: string,
    private readonly connectTimeoutMs = 3000,
  ) {}

  /** A connected client; rejects (quickly) while Temporal is unreachable. */
  async client(): Promise<Client> {
    this.pending ??= this.connect().catch((err: unknown) => {
      this.pending = undefined;
      throw err;
    });
    return await this.pending;
  }

  private async connect(): Promise<Client> {
    const connection = await Connection.connect({ address: this.address, connectTimeout: this.connectTimeoutMs });
    try {
      await ensureSearchAttributes(connection, this.namespace);
    } catch (err) {
      await connection.close().catch(() => {});
      throw err;
    }
    this.connection = connection;
    return new Client({ connection, namespace: this.namespace });
  }

  /** True when the frontend answers within `timeoutMs`. */
  async isReachable(timeoutMs = 2000): Promise<boolean> {
    try {
      const client = await this.client();
      await client.withDeadline(Date.now() + timeoutMs, () =>
        client.connection.workflowService.getSystemInfo({}),
      );
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    const conn = this.connection;
    this.pending = undefined;
    this.connection = undefined;
    await conn?.close().catch(() => {});
  }
}

/** A workflow's page (or one run's history) in the Temporal Web UI (TEMPORAL_UI_URL), or undefined when no UI address is configured. */
export function workflowUiUrl(uiUrl: string | undefined, namespace: string, workflowId: string, runId?: string): string | undefined {
  const ui = uiUrl?.replace(/\/+$/, '');
  if (!ui) return undefined;
  const workflow = `${ui}/namespaces/${encodeURIComponent(namespace)}/workflows/${encodeURIComponent(workflowId)}`;
  return runId ? `${workflow}/${encodeURIComponent(runId)}/history` : workflow;
}
