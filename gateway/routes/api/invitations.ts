/**
 * Admin API for invitations (`admin` scope): invite an email into a source's Auth0 connection with
 * entitlements and an expiry, list invitations, revoke one. See core/invitations/invitations.ts.
 * The invitation token is in no answer: it reaches the invitee only, through the delivery
 * notification channel (DELIVERY_WEBHOOK_URL).
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { PermanentError, TransientError } from '../../../connectors/index.js';
import { createSignedPost } from '../../../core/delivery/notify.js';
import { createInvitation, listInvitations, revokeInvitation } from '../../../core/invitations/invitations.js';
import { openAuth0Source } from '../../../core/sources/import.js';
import { sendApiError as fail } from './errors.js';
import { apiErrors, DateTime, Nullable, Open, StringEnum } from '../schemas.js';
import { tellInvitationRequest } from '../../invitation-requests.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const DAY_MS = 86_400_000;
const MAX_VALIDITY_MS = 30 * DAY_MS;

const InvitationBody = Type.Object(
  {
    source: Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$', description: 'the Auth0 source (tenant and connection) to invite into' }),
    email: Type.String({ format: 'email', maxLength: 320 }),
    entitlements: Type.Array(Type.String({ minLength: 1 }), { minItems: 1, maxItems: 50, uniqueItems: true, description: 'entitlement ids or "connectorId/name"' }),
    expiresAt: Type.Optional(Type.String({ format: 'date-time', description: 'default 7 days from now; at most 30 days' })),
  },
  { additionalProperties: false },
);
const ListQuery = Type.Object({ source: Type.Optional(Type.String()), email: Type.Optional(Type.String()) }, { additionalProperties: false });
const IdParams = Type.Object({ id: Type.String() });

const Invitation = Open({
  id: Type.String({ format: 'uuid' }),
  source: Type.String(),
  email: Type.String(),
  entitlements: Type.Array(Type.String(), { description: '"connectorId/name" of each entitlement granted at redemption' }),
  expiresAt: DateTime(),
  status: StringEnum(['pending', 'redeemed', 'revoked', 'expired']),
  createdBy: Type.String(),
  createdAt: DateTime(),
  auth0UserId: Nullable(Type.String(), 'the Auth0 user that redeemed it'),
  newUser: Nullable(Type.Boolean(), 'whether the invitation created the Auth0 user (false: the email had one)'),
  deliveredAt: Nullable(DateTime(), 'when the delivery channel accepted the link'),
  deliveryError: Nullable(Type.String(), 'why the link could not be sent'),
  redeemedAt: Nullable(DateTime()),
  userId: Nullable(Type.String(), 'the directory user it was redeemed for'),
  revokedAt: Nullable(DateTime()),
  requestId: Nullable(Type.String(), 'the access request the invitation was made for (null: made through this API); revoking the invitation revokes that request'),
});

const invitations: FastifyPluginAsyncTypebox = async (app) => {
  const admin = app.requireScope('admin');
  const tags = ['admin'];
  const security = [{ bearer: [] }];

  app.post(
    '/api/invitations',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: 'Invite an email into an Auth0 connection with entitlements; the link goes to the delivery channel',
        body: InvitationBody,
        response: {
          201: { ...Invitation, description: 'invited; the link went to the delivery channel' },
          ...apiErrors([400, 409, 502], {
            400: 'invalid body or expiry, or no such source or entitlement',
            409: 'no delivery channel is configured, or the source has no invitationUrl',
            502: 'the invitation was recorded but not sent (Auth0 or the delivery channel failed): revoke it and invite again',
          }),
        },
      },
    },
    async (request, reply) => {
      const body = request.body;
      const expiresAt = body.expiresAt ? new Date(body.expiresAt) : new Date(Date.now() + 7 * DAY_MS);
      if (expiresAt.getTime() <= Date.now()) return fail(reply, 400, 'expiresAt must be in the future');
      if (expiresAt.getTime() > Date.now() + MAX_VALIDITY_MS) return fail(reply, 400, 'expiresAt must be within 30 days');
      const { deliveryWebhookUrl: url, deliveryWebhookSecret: secret } = app.config;
      if (!url || !secret) return fail(reply, 409, 'invitations are sent through the delivery channel: set DELIVERY_WEBHOOK_URL and DELIVERY_WEBHOOK_SECRET');
      const { rows: src } = await app.db.query('SELECT 1 FROM sources WHERE id = $1', [body.source]);
      if (!src[0]) return fail(reply, 400, `no source ${body.source}`);
      const ids: string[] = [];
      for (const ref of body.entitlements) {
        const { rows } = await app.db.query<{ id: string }>(
          UUID.test(ref) ? 'SELECT id FROM entitlements WHERE id = $1' : `SELECT id FROM entitlements WHERE connector_id || '/' || name = $1`,
          [ref],
        );
        if (!rows[0]) return fail(reply, 400, `no entitlement ${ref}`);
        ids.push(rows[0].id);
      }
      const notify = createSignedPost({ url, secret, label: 'invitation', refusalHint: 'check DELIVERY_WEBHOOK_URL and DELIVERY_WEBHOOK_SECRET' });
      try {
        const invitation = await createInvitation(app.db, {
          sourceId: body.source,
          source: await openAuth0Source(app.db, body.source),
          email: body.email,
          entitlementIds: ids,
          expiresAt,
          actor: request.identity!.name,
          notify,
        });
        return reply.code(201).send(invitation);
      } catch (err) {
        if (err instanceof PermanentError && err.kind === 'invalidConfig') return fail(reply, 409, err.message);
        if (err instanceof PermanentError || err instanceof TransientError) {
          return fail(reply, 502, `the invitation was recorded but not sent: ${err.message}; revoke it and invite again`);
        }
        throw err;
      }
    },
  );

  app.get(
    '/api/invitations',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: 'Invitations, newest first (status pending, redeemed, revoked or expired)',
        querystring: ListQuery,
        response: { 200: Type.Array(Invitation, { description: 'at most 500' }), ...apiErrors([400]) },
      },
    },
    async (request) => await listInvitations(app.db, request.query),
  );

  app.delete(
    '/api/invitations/:id',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: 'Revoke a pending invitation: its link stops working (an access request that made it records revoked)',
        params: IdParams,
        response: {
          200: { ...Invitation, description: 'the invitation, revoked' },
          ...apiErrors([404, 409], { 404: 'no such invitation', 409: 'the invitation is no longer pending' }),
        },
      },
    },
    async (request, reply) => {
      if (!UUID.test(request.params.id)) return fail(reply, 404, `no invitation ${request.params.id}`);
      const out = await revokeInvitation(app.db, request.params.id, request.identity!.name);
      if (out === 'not-found') return fail(reply, 404, `no invitation ${request.params.id}`);
      if (out === 'not-pending') return fail(reply, 409, `invitation ${request.params.id} is no longer pending`);
      tellInvitationRequest(app.temporal, request.log, out.requestId);
      return out;
    },
  );
};

export default invitations;
