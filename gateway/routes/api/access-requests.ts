/**
 * Access requests over REST: the catalogue of access policies (`admin` scope) and, for people,
 * requests, decisions and the approvals inbox (`requests` scope).
 *
 * Who is acting: every request, decision and cancellation is made as a directory user. A personal
 * token (bound to a user when issued) acts as that user only. A token of a trusted front end (with
 * `requests:act-as`) or an admin token names the user per call in `X-Act-As` (userName or id).
 *
 * Decisions go to the request's workflow as Temporal Updates, so 200/403/409 come from the
 * workflow's own state; refused attempts are recorded and audited here.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { Type } from '@sinclair/typebox';
import { withTransaction } from '../../../core/db/pool.js';
import { AccessPolicyBodySchema, findPolicy, listPolicies, PolicyError, resolvePolicy, savePolicy, type AccessPolicyBody } from '../../../core/access/policies.js';
import { approvalsOf, createRequest, getRequest, isApproverOf, listRequestsOf, RequestRefused, exportRequests, type AccessRequestView, type Decision } from '../../../core/access/requests.js';
import { tasksOf } from '../../../core/access/tasks.js';
import { sendApiError } from './errors.js';
import { csvField, parseInstant } from '../../../core/audit/chain.js';
import { decideAs } from '../../access-decisions.js';
import { cancelRequest, claimTaskAs, completeTaskAs, endAccess, releaseAccess, stateOf, type ActionOutcome } from '../../access-actions.js';
import { apiErrors, ApiError, DateTime, Nullable, Open, StringEnum } from '../schemas.js';
import { revokeInvitation } from '../../../core/invitations/invitations.js';
import { tellInvitationRequest } from '../../invitation-requests.js';
import { ACT_AS, actingUser, type Actor } from '../../acting-user.js';

const fail = sendApiError;

const IdParams = Type.Object({ id: Type.String({ format: 'uuid' }) });
const actAsHeader = Type.Object({
  'x-act-as': Type.Optional(Type.String({ description: 'userName or id of the user to act as (admin or requests:act-as tokens only)' })),
});

// Answers. Objects are open (additionalProperties) so a field added to a view is never dropped.

const AccessPolicy = Open({
  id: Type.String({ format: 'uuid' }),
  name: Type.String(),
  entitlementId: Nullable(Type.String()),
  entitlement: Nullable(Type.String(), '"connectorId/name"; null for a manual-only resource'),
  displayName: Type.String(),
  description: Nullable(Type.String()),
  aliases: Type.Array(Type.String()),
  owners: Open({}),
  eligibility: Open({}),
  durations: Open({}),
  justificationRequired: Type.Boolean(),
  fulfilment: Open({ mode: Type.String() }),
  stages: Type.Array(Open({ name: Type.String() }), { description: 'serial approval stages, with users and groups as ids' }),
  requestTtlSeconds: Nullable(Type.Integer()),
  invitation: Type.Optional(
    Nullable(Open({ sourceId: Type.String(), sponsors: Open({}), expiresInSeconds: Type.Integer() }), 'requests may invite people not in the directory yet; null: they may not'),
  ),
});

const StageState = Open({
  stage: Type.Integer(),
  name: Type.String(),
  rule: StringEnum(['any', 'all', 'quorum']),
  quorum: Nullable(Type.Integer()),
  approvers: Type.Array(Type.String(), { description: 'user ids' }),
  decisions: Type.Object({}, { additionalProperties: true, description: 'approver id → approve or reject' }),
  status: Type.String({ description: 'open, approved, rejected, skipped or closed' }),
});

const requestState = {
  requestId: Type.String(),
  status: Type.String({ description: 'pending, approved, invited (an invitation request whose invitation waits to be redeemed), rejected, cancelled, expired, fulfilled, failed or revoked' }),
  stage: Type.Integer({ description: 'the current stage (index); the number of stages once every stage is through' }),
  reason: Nullable(Type.String()),
  stages: Type.Array(StageState),
};

const AccessRequestState = Open(requestState, { description: "the request's progress" });

const AccessRequest = Open({
  ...requestState,
  id: Type.String({ format: 'uuid' }),
  policy: Type.String(),
  displayName: Type.String(),
  requesterId: Type.String(),
  requester: Type.String(),
  justification: Nullable(Type.String()),
  durationSeconds: Nullable(Type.Integer()),
  createdBy: Type.String(),
  grantId: Nullable(Type.String()),
  extends: Nullable(Type.String(), 'for an extension: the request whose access it prolongs'),
  invitee: Type.Optional(Nullable(Open({ email: Type.String(), displayName: Nullable(Type.String()) }), 'an invitation request: the person invited (the requester sponsors them)')),
  invitation: Type.Optional(
    Nullable(
      Open({
        id: Type.String({ format: 'uuid' }),
        status: StringEnum(['pending', 'redeemed', 'revoked', 'expired']),
        expiresAt: DateTime(),
        deliveredAt: Nullable(DateTime()),
        redeemedAt: Nullable(DateTime()),
        userId: Nullable(Type.String(), 'the directory user it was redeemed for'),
      }),
      'the invitation sent once the request was approved (its link is never in an answer)',
    ),
  ),
  createdAt: DateTime(),
  decidedAt: Nullable(DateTime()),
  fulfilledAt: Nullable(DateTime()),
});

const AccessTask = Open({
  id: Type.String({ format: 'uuid' }),
  requestId: Type.String(),
  kind: StringEnum(['grant', 'revoke']),
  policy: Type.String(),
  displayName: Type.String(),
  requester: Type.String(),
  instructions: Nullable(Type.String()),
  status: StringEnum(['open', 'claimed', 'done', 'failed']),
  claimedBy: Nullable(Type.String()),
  note: Nullable(Type.String()),
  createdAt: DateTime(),
});

/** What completing a task answers: the workflow's account of it, or the task as recorded once the workflow ended. */
const TaskOutcome = Open(
  {
    taskId: Type.Optional(Type.String()),
    id: Type.Optional(Type.String()),
    kind: Type.Optional(Type.String()),
    status: Type.Optional(Type.String()),
    request: Type.Optional(AccessRequestState),
  },
  { description: 'the task and, from the workflow, the request it belongs to' },
);

/** A refusal (403, 409) that says where the request (`state`) or the task (`task`) stands. */
const Refusal = (description: string) =>
  Type.Composite([ApiError(), Type.Object({ state: Type.Optional(AccessRequestState), task: Type.Optional(AccessTask) })], { additionalProperties: true, description });

const ExportedRequest = Open({
  id: Type.String(),
  policy: Type.String(),
  entitlement: Nullable(Type.String()),
  requester: Type.String(),
  invitee: Type.Optional(Nullable(Type.String(), 'an invitation request: the email invited (the requester is its sponsor)')),
  justification: Nullable(Type.String()),
  durationSeconds: Nullable(Type.Integer()),
  status: Type.String(),
  reason: Nullable(Type.String()),
  createdAt: Type.String(),
  decidedAt: Nullable(Type.String()),
  fulfilledAt: Nullable(Type.String()),
  decisions: Type.Array(Open({})),
});

const NOT_A_PERSON = { 400: "invalid request, or the token is no person's and names nobody in X-Act-As" };
const TEMPORAL_DOWN = { 503: 'Temporal is unreachable (or the request is being started); try again later' };

const accessRequests: FastifyPluginAsync = async (app) => {
  const admin = app.requireScope('admin');
  const requests = app.requireScope('requests');
  const security = [{ bearer: [] }];

  /** The directory user the call acts as; answers the error and undefined when there is none. */
  const actor = async (request: FastifyRequest, reply: FastifyReply): Promise<Actor | undefined> => await actingUser(app.db, request, reply);

  // ------------------------------------------------------------------ catalogue

  const catalogue = { tags: ['access requests'], security };

  app.get('/api/access-policies', {
      onRequest: admin,
      schema: { ...catalogue, summary: 'List access policies (the catalogue of requestable access)', response: { 200: Type.Array(AccessPolicy), ...apiErrors([]) } },
    }, async () => await listPolicies(app.db));

  app.get<{ Params: { name: string } }>(
    '/api/access-policies/:name',
    {
      onRequest: admin,
      schema: {
        ...catalogue,
        summary: 'An access policy by name, alias or id',
        params: Type.Object({ name: Type.String() }),
        response: { 200: AccessPolicy, ...apiErrors([404], { 404: 'no such access policy' }) },
      },
    },
    async (request, reply) => (await findPolicy(app.db, request.params.name)) ?? fail(reply, 404, `no access policy "${request.params.name}"`),
  );

  app.put<{ Params: { name: string }; Body: AccessPolicyBody }>(
    '/api/access-policies/:name',
    {
      onRequest: admin,
      schema: {
        ...catalogue,
        summary: 'Create or replace an access policy: what can be requested, by whom, for how long, who approves in which stages, how it is fulfilled',
        params: Type.Object({ name: Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$' }) }),
        body: AccessPolicyBodySchema,
        response: {
          200: { ...AccessPolicy, description: 'replaced' },
          201: { ...AccessPolicy, description: 'created' },
          ...apiErrors([400], { 400: 'invalid policy, or a user, group or entitlement it names does not exist' }),
        },
      },
    },
    async (request, reply) => {
      let resolved;
      try {
        resolved = await resolvePolicy(app.db, request.params.name, request.body);
      } catch (err) {
        if (err instanceof PolicyError) return fail(reply, 400, err.message);
        throw err;
      }
      const { saved, before } = await withTransaction(app.db, async (tx) => {
        const result = await savePolicy(tx, randomUUID(), resolved);
        await tx.query(
          `INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, before, after) VALUES ($1, 'access-policy.saved', 'AccessPolicy', $2, 'admin API', $3, $4)`,
          [request.identity!.name, result.saved.id, result.before ? JSON.stringify(result.before) : null, JSON.stringify(result.saved)],
        );
        return result;
      });
      return reply.code(before ? 200 : 201).send(saved);
    },
  );

  // ------------------------------------------------------------------ requests

  const people = { tags: ['access requests'], security, headers: actAsHeader };

  app.post<{ Body: { policy: string; justification?: string; durationSeconds?: number; permanent?: boolean; extends?: string; invitee?: { email: string; displayName?: string } } }>(
    '/api/requests',
    {
      onRequest: requests,
      schema: {
        ...people,
        summary: 'Request access under a policy, as the acting user; or, with invitee, for someone not in the directory yet (an invitation, where the policy allows it)',
        body: Type.Object(
          {
            policy: Type.String({ minLength: 1, description: 'policy name, alias or id' }),
            justification: Type.Optional(Type.String({ maxLength: 4000 })),
            durationSeconds: Type.Optional(Type.Integer({ minimum: 1, description: "how long the access is needed; default: the policy's default" })),
            permanent: Type.Optional(Type.Boolean({ description: 'ask for access without an end (where the policy allows it)' })),
            extends: Type.Optional(
              Type.String({ format: 'uuid', description: 'ask to prolong your fulfilled, time-bound access of this request (decided like a new request)' }),
            ),
            invitee: Type.Optional(
              Type.Object(
                {
                  email: Type.String({ format: 'email', maxLength: 320, description: 'the address invited; nobody in the directory may have it' }),
                  displayName: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
                },
                {
                  additionalProperties: false,
                  description: "ask for access for someone not in the directory yet: once approved they are invited (an email with the link) into the policy's Auth0 source and get the access at their first login. Only under a policy with invitation settings, and only for its sponsors",
                },
              ),
            ),
          },
          { additionalProperties: false },
        ),
        response: {
          201: AccessRequest,
          ...apiErrors([400, 404, 409], {
            ...NOT_A_PERSON,
            400: "invalid request, the token is no person's and names nobody in X-Act-As, or the policy does not invite",
            403: 'the token may not act as that user, or the user may not request (or sponsor an invitation) under the policy',
            404: 'no such access policy',
            409: 'the request conflicts with access already requested or held, the invitee is in the directory already, or no delivery channel is configured for invitations',
          }),
        },
      },
    },
    async (request, reply) => {
      const me = await actor(request, reply);
      if (!me) return reply;
      const policy = await findPolicy(app.db, request.body.policy);
      if (!policy) return fail(reply, 404, `no access policy "${request.body.policy}"`);
      if (request.body.invitee && policy.invitation && !(app.config.deliveryWebhookUrl && app.config.deliveryWebhookSecret)) {
        return fail(reply, 409, 'invitations are sent through the delivery channel: set DELIVERY_WEBHOOK_URL and DELIVERY_WEBHOOK_SECRET');
      }
      let id: string;
      try {
        id = await createRequest(app.db, app.scimRegistry, {
          policy,
          requesterId: me.userId,
          createdBy: request.identity!.name,
          ...(request.body.justification !== undefined ? { justification: request.body.justification } : {}),
          ...(request.body.durationSeconds !== undefined ? { durationSeconds: request.body.durationSeconds } : {}),
          ...(request.body.permanent !== undefined ? { permanent: request.body.permanent } : {}),
          ...(request.body.extends !== undefined ? { extendsId: request.body.extends } : {}),
          ...(request.body.invitee !== undefined ? { invitee: request.body.invitee } : {}),
        });
      } catch (err) {
        if (err instanceof RequestRefused) return fail(reply, err.status, err.message);
        throw err;
      }
      app.outbox.kick();
      return reply.code(201).send(await getRequest(app.db, id));
    },
  );

  app.get('/api/requests', {
      onRequest: requests,
      schema: { ...people, summary: "The acting user's own requests, newest first", response: { 200: Type.Array(AccessRequest), ...apiErrors([400], NOT_A_PERSON) } },
    }, async (request, reply) => {
    const me = await actor(request, reply);
    if (!me) return reply;
    return await listRequestsOf(app.db, me.userId);
  });

  app.get('/api/approvals', {
      onRequest: requests,
      schema: { ...people, summary: "Requests waiting on the acting user's decision", response: { 200: Type.Array(AccessRequest), ...apiErrors([400], NOT_A_PERSON) } },
    }, async (request, reply) => {
    const me = await actor(request, reply);
    if (!me) return reply;
    return await approvalsOf(app.db, me.userId);
  });

  /** The request if the caller may see it: its requester, one of its approvers, or an admin token. */
  async function visible(request: FastifyRequest<{ Params: { id: string } }>, reply: FastifyReply): Promise<{ view: AccessRequestView; me: Actor | undefined } | undefined> {
    const isAdmin = request.identity!.scopes.includes('admin');
    const me = isAdmin && !request.headers[ACT_AS] && !request.identity!.userId ? undefined : await actor(request, reply);
    if (!isAdmin && !me) return undefined;
    const view = await getRequest(app.db, request.params.id);
    if (!view || (!isAdmin && view.requesterId !== me!.userId && !(await isApproverOf(app.db, view.id, me!.userId)))) {
      fail(reply, 404, `no access request ${request.params.id}`);
      return undefined;
    }
    return { view, me };
  }

  app.get<{ Params: { id: string } }>(
    '/api/requests/:id',
    {
      onRequest: requests,
      schema: {
        ...people,
        summary: 'One request with its stages and decisions',
        params: IdParams,
        response: { 200: AccessRequest, ...apiErrors([400, 404], { ...NOT_A_PERSON, 404: 'no such request you may see' }) },
      },
    },
    async (request, reply) => (await visible(request, reply))?.view ?? reply,
  );

  app.post<{ Params: { id: string } }>(
    '/api/requests/:id/cancel',
    {
      onRequest: requests,
      schema: {
        ...people,
        summary: 'Cancel a pending request (its requester; an admin token without X-Act-As cancels any)',
        params: IdParams,
        response: {
          200: AccessRequestState,
          ...apiErrors([400, 404, 503], { ...NOT_A_PERSON, 404: 'no such request you may see', ...TEMPORAL_DOWN }),
          403: Refusal('only the requester (or an admin token) cancels'),
          409: Refusal('the request is no longer pending'),
        },
      },
    },
    async (request, reply) => {
      const found = await visible(request, reply);
      if (!found) return reply;
      const { view, me } = found;
      const asAdmin = me === undefined;
      if (!asAdmin && view.requesterId !== me.userId) return fail(reply, 403, 'only the requester can cancel a request');
      const outcome = await cancelRequest(app.db, () => app.temporal.client(), view, { actorId: me?.userId ?? view.requesterId, actorName: me?.userName ?? request.identity!.name, asAdmin });
      return outcome.ok ? outcome.value : refused(reply, outcome);
    },
  );

  app.post<{ Params: { id: string }; Body: { reason?: string } | undefined }>(
    '/api/requests/:id/release',
    {
      onRequest: requests,
      schema: {
        ...people,
        summary:
          'Give up your own fulfilled access before it ends (the requester): automatic access loses its grant and userSync removes it from the target; access given by hand gets its revocation task',
        params: IdParams,
        body: Type.Unsafe<{ reason?: string } | null>({ type: ['object', 'null'], additionalProperties: false, properties: { reason: { type: 'string', maxLength: 4000 } } }),
        response: {
          200: AccessRequestState,
          ...apiErrors([400, 404, 503], { ...NOT_A_PERSON, 404: 'no such request you may see', ...TEMPORAL_DOWN }),
          403: Refusal('only the requester releases their access'),
          409: Refusal('the request holds no running access'),
        },
      },
    },
    async (request, reply) => {
      const found = await visible(request, reply);
      if (!found) return reply;
      const { view, me } = found;
      if (!me) return fail(reply, 400, `this token is no person's; name the acting user in the X-Act-As header`);
      const outcome = await releaseAccess(app.db, () => app.temporal.client(), me, view.id, request.identity!.name, request.body?.reason);
      if (!outcome.ok) return refused(reply, outcome);
      app.outbox.kick();
      return outcome.value;
    },
  );

  app.post<{ Params: { id: string }; Body: { decision: Decision; comment?: string } }>(
    '/api/requests/:id/decisions',
    {
      onRequest: requests,
      schema: {
        ...people,
        summary: "Approve or reject the request's current stage as the acting user; 403 for anyone who may not decide, 409 once the stage or request is closed",
        params: IdParams,
        body: Type.Object(
          { decision: StringEnum(['approve', 'reject']), comment: Type.Optional(Type.String({ maxLength: 4000 })) },
          { additionalProperties: false },
        ),
        response: {
          200: AccessRequestState,
          ...apiErrors([400, 404, 503], { ...NOT_A_PERSON, 404: 'no such request', ...TEMPORAL_DOWN }),
          403: Refusal('the acting user may not decide this stage'),
          409: Refusal('the stage or the request is closed'),
        },
      },
    },
    async (request, reply) => {
      const me = await actor(request, reply);
      if (!me) return reply;
      const { decision, comment } = request.body;
      // The same rules as every other channel (the Slack app): ../../access-decisions.ts.
      const outcome = await decideAs(app.db, () => app.temporal.client(), me, request.params.id, decision, comment);
      if (outcome.ok) {
        // An approval that completes the request wrote its grant: provisioning starts now, not at the outbox's next poll.
        app.outbox.kick();
        return outcome.state;
      }
      if (outcome.status === 403 || outcome.status === 409) {
        const { status, message, state } = outcome;
        return reply.code(status).send({ statusCode: status, error: status === 403 ? 'Forbidden' : 'Conflict', message, ...(state ? { state } : {}) });
      }
      return fail(reply, outcome.status, outcome.message);
    },
  );

  // ------------------------------------------------------------------ administration and evidence

  app.post<{ Params: { id: string }; Body: { reason?: string } | undefined }>(
    '/api/requests/:id/revoke',
    {
      onRequest: admin,
      schema: {
        ...catalogue,
        summary: 'Revoke a request at any time: a pending one is cancelled, fulfilled automatic access is taken away (its grant ends), an invited one has its invitation revoked',
        params: IdParams,
        body: Type.Unsafe<{ reason?: string } | null>({ type: ['object', 'null'], additionalProperties: false, properties: { reason: { type: 'string', maxLength: 4000 } } }),
        response: {
          200: AccessRequestState,
          ...apiErrors([400, 404, 503], { 404: 'no such request', ...TEMPORAL_DOWN }),
          409: Refusal('the request holds no automatic access to revoke'),
        },
      },
    },
    async (request, reply) => {
      const view = await getRequest(app.db, request.params.id);
      if (!view) return fail(reply, 404, `no access request ${request.params.id}`);
      const reason = request.body?.reason ?? 'revoked by an administrator';
      const temporal = () => app.temporal.client();
      if (view.status === 'pending') {
        const outcome = await cancelRequest(app.db, temporal, view, { actorId: view.requesterId, actorName: request.identity!.name, asAdmin: true });
        return outcome.ok ? outcome.value : refused(reply, outcome);
      }
      if (view.status === 'invited' && view.invitation) {
        // Its invitation is revoked (the link stops working) and the request records revoked, in one transaction.
        const out = await revokeInvitation(app.db, view.invitation.id, request.identity!.name, reason);
        if (out === 'not-found' || out === 'not-pending') {
          const now = (await getRequest(app.db, view.id))!;
          return reply.code(409).send({ statusCode: 409, error: 'Conflict', message: `the request is ${now.status}`, state: stateOf(now) });
        }
        tellInvitationRequest(app.temporal, request.log, view.id);
        return stateOf((await getRequest(app.db, view.id))!);
      }
      const outcome = await endAccess(app.db, temporal, view, { actor: request.identity!.name, reason });
      if (!outcome.ok) return refused(reply, outcome);
      app.outbox.kick();
      return outcome.value;
    },
  );

  app.get<{ Querystring: { from: string; to?: string; format: 'csv' | 'json' } }>(
    '/api/requests/export',
    {
      onRequest: admin,
      schema: {
        ...catalogue,
        summary: 'For auditors: the requests made in a period with every decision and refused attempt, as CSV (one row per decision) or JSON',
        querystring: Type.Object(
          {
            from: Type.String({ description: 'ISO 8601 date or date-time with a zone; inclusive' }),
            to: Type.Optional(Type.String({ description: 'ISO 8601 date or date-time with a zone; exclusive; default now' })),
            format: StringEnum(['csv', 'json']),
          },
          { additionalProperties: false },
        ),
        response: {
          200: {
            description: 'the requests, oldest first, as an attachment',
            content: {
              'text/csv': { schema: Type.String({ description: 'header row, then one row per decision (a request without decisions: one row); CRLF line ends' }) },
              'application/json': { schema: Type.Array(ExportedRequest) },
            },
          },
          ...apiErrors([400]),
        },
      },
    },
    async (request, reply) => {
      const from = parseInstant(request.query.from);
      const to = request.query.to === undefined ? new Date().toISOString() : parseInstant(request.query.to);
      if (!from || !to) return fail(reply, 400, 'from, to: expected ISO 8601 dates or date-times with a zone (2024-05-01, 2024-05-01T12:00:00Z)');
      const rows = await exportRequests(app.db, from, to);
      reply.header('content-disposition', `attachment; filename="access-requests.${request.query.format}"`);
      if (request.query.format === 'json') return reply.type('application/json; charset=utf-8').send(JSON.stringify(rows));
      const columns = ['requestId', 'policy', 'entitlement', 'requester', 'justification', 'durationSeconds', 'status', 'reason', 'createdAt', 'decidedAt', 'fulfilledAt', 'stage', 'approver', 'decision', 'comment', 'accepted', 'refusal', 'decisionAt', 'task'];
      const lines = [columns.join(',')];
      for (const r of rows) {
        const head = [r.id, r.policy, r.entitlement, r.requester, r.justification, r.durationSeconds, r.status, r.reason, r.createdAt, r.decidedAt, r.fulfilledAt];
        const decisions = r.decisions.length ? r.decisions : [undefined];
        for (const d of decisions) {
          lines.push([...head, d?.stage ?? null, d?.approver ?? null, d?.decision ?? null, d?.comment ?? null, d ? String(d.accepted) : null, d?.refusal ?? null, d?.at ?? null, null].map(csvField).join(','));
        }
        // A refused attempt at a task: who tried (approver), what (decision: "claim task", "report task done"), why (refusal).
        for (const x of r.taskRefusals) {
          const what = x.attempt === 'claim' ? 'claim task' : `report task ${x.outcome ?? ''}`.trim();
          lines.push([...head, null, x.actor, what, null, 'false', x.reason, x.at, x.task].map(csvField).join(','));
        }
      }
      return reply.type('text/csv; charset=utf-8').send(`${lines.join('\r\n')}\r\n`);
    },
  );

  // ------------------------------------------------------------------ manual fulfilment tasks

  app.get('/api/tasks', {
      onRequest: requests,
      schema: {
        ...people,
        summary: "Manual fulfilment and revocation tasks of the acting user's fulfilment groups",
        response: { 200: Type.Array(AccessTask), ...apiErrors([400], NOT_A_PERSON) },
      },
    }, async (request, reply) => {
    const me = await actor(request, reply);
    if (!me) return reply;
    return await tasksOf(app.db, me.userId);
  });

  app.post<{ Params: { id: string } }>(
    '/api/tasks/:id/claim',
    {
      onRequest: requests,
      schema: {
        ...people,
        summary: 'Claim an open task (an assignee)',
        params: IdParams,
        response: { 200: AccessTask, ...apiErrors([400, 404], { ...NOT_A_PERSON, 404: 'no such task of yours' }), 409: Refusal('the task is not open') },
      },
    },
    async (request, reply) => {
      const me = await actor(request, reply);
      if (!me) return reply;
      const outcome = await claimTaskAs(app.db, me, request.params.id);
      return outcome.ok ? outcome.value : refused(reply, outcome);
    },
  );

  app.post<{ Params: { id: string }; Body: { outcome: 'done' | 'failed'; note?: string } }>(
    '/api/tasks/:id/complete',
    {
      onRequest: requests,
      schema: {
        ...people,
        summary: 'Report a task done (the access was given or taken away) or failed, with a note the requester can read',
        params: IdParams,
        body: Type.Object(
          { outcome: StringEnum(['done', 'failed']), note: Type.Optional(Type.String({ maxLength: 4000 })) },
          { additionalProperties: false },
        ),
        response: {
          200: TaskOutcome,
          ...apiErrors([400, 404, 503], { ...NOT_A_PERSON, 404: 'no such task', ...TEMPORAL_DOWN }),
          403: Refusal('not a member of the fulfilment group of the task'),
          409: Refusal('the task is closed'),
        },
      },
    },
    async (request, reply) => {
      const me = await actor(request, reply);
      if (!me) return reply;
      const { outcome, note } = request.body;
      // The same rules as the console's tasks page: ../../access-actions.ts.
      const reported = await completeTaskAs(app.db, () => app.temporal.client(), me, request.params.id, outcome, note);
      return reported.ok ? reported.value : refused(reply, reported);
    },
  );

  /** Answers a refused action: 403 and 409 with where the request (`state`) or the task (`task`) stands, anything else as an API error. */
  function refused(reply: FastifyReply, outcome: Extract<ActionOutcome<unknown>, { ok: false }>) {
    const { status, message, state, task } = outcome;
    if (status !== 403 && status !== 409) return fail(reply, status, message);
    return reply.code(status).send({ statusCode: status, error: status === 403 ? 'Forbidden' : 'Conflict', message, ...(task ? { task } : {}), ...(state ? { state } : {}) });
  }
};

export default accessRequests;
