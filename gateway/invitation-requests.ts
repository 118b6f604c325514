/**
 * Invitation requests (access requests for an email not in the directory) wait in their workflow
 * until their invitation is redeemed, revoked or expires. Whatever redeems or revokes one records
 * the request's new status in the same transaction (core/invitations/invitations.ts); this tells
 * the workflow, so it answers and notifies at once. Best effort and off the caller's path (a
 * redemption answers the login without waiting for Temporal): a workflow that does not hear it looks
 * again by itself, at the latest when the invitation expires.
 */
import type { FastifyBaseLogger } from 'fastify';
import type { Client } from '@temporalio/client';
import { signalInvitationSettled } from '../workflows/client.js';

export function tellInvitationRequest(temporal: { client(): Promise<Client> }, log: FastifyBaseLogger, requestId: string | null | undefined): void {
  if (!requestId) return;
  void (async () => {
    try {
      await signalInvitationSettled(await temporal.client(), requestId);
    } catch (err) {
      log.warn({ requestId, err: (err as Error).message }, 'could not tell the access request that its invitation was settled; it looks again by itself');
    }
  })();
}
