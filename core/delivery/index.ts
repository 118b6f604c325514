/**
 * One-time, expiring download links for connector artifacts: the gateway side of `ctx.deliver`
 * (in the connector SDK, @scim-gateway/connector-sdk). docs/operations.md ("Deliveries") describes it for operators.
 *
 * - ./crypto.ts: tokens, their hashes, and the encryption of content under a key only the link holds.
 * - ./store.ts: creating (worker), redeeming (gateway), purging and listing deliveries.
 * - ./notify.ts: the signed webhook that tells the user about a new link.
 * - ./sweeper.ts: the gateway's periodic purge.
 */
import type { Deliver } from '@scim-gateway/connector-sdk';
import type { CommonConfig } from '../config.js';
import type { Db } from '../db/pool.js';
import { createWebhookNotify, type Notify } from './notify.js';
import { createDeliver } from './store.js';

export { createDeliver, downloadUrl, listDeliveries, purgeDeliveries, redeemDelivery } from './store.js';
export { createWebhookNotify, type DeliveryNotice, type Notify } from './notify.js';
export { DeliverySweeper } from './sweeper.js';

/** Builds the `Deliver` of one connector, bound to its id. */
export type DeliverFactory = (connectorId: string) => Deliver;

/**
 * The deliver factory a worker gives its connectors, or undefined (connectors then see no
 * `ctx.deliver`) unless both a public URL for links and a channel to announce them are configured.
 * `notify` replaces the configured channel.
 */
export function deliveryFactory(
  cfg: Pick<CommonConfig, 'publicUrl' | 'deliveryWebhookUrl' | 'deliveryWebhookSecret' | 'deliveryTtlMs' | 'deliveryMaxTtlMs'>,
  db: Db,
  notify?: Notify,
): DeliverFactory | undefined {
  if (!cfg.publicUrl) return undefined;
  const channel = notify ?? (cfg.deliveryWebhookUrl && cfg.deliveryWebhookSecret ? createWebhookNotify({ url: cfg.deliveryWebhookUrl, secret: cfg.deliveryWebhookSecret }) : undefined);
  if (!channel) return undefined;
  const opts = { db, publicUrl: cfg.publicUrl, notify: channel, defaultTtlMs: cfg.deliveryTtlMs, maxTtlMs: cfg.deliveryMaxTtlMs };
  return (connectorId) => createDeliver(opts, connectorId);
}

/** Why deliveries are off, for the worker's start-up line; undefined when they are on. */
export function deliveriesOffReason(cfg: Pick<CommonConfig, 'publicUrl' | 'deliveryWebhookUrl'>): string | undefined {
  const missing = [cfg.publicUrl ? undefined : 'PUBLIC_URL', cfg.deliveryWebhookUrl ? undefined : 'DELIVERY_WEBHOOK_URL'].filter(Boolean);
  return missing.length ? `set ${missing.join(' and ')} to let connectors deliver files to users` : undefined;
}

/**
 * A request URL fit for logs: the token of a download link is replaced, wherever the path holds
 * `/downloads/`, so a log line never carries a working link.
 */
export function redactDownloadPath(url: string): string {
  return url.replace(/\/downloads\/[^?#]*/gi, '/downloads/[redacted]');
}
