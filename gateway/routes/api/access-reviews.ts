/**
 * Access reviews over REST: campaigns, review schedules and the auditors' report (`admin` scope),
 * and for reviewers their pending items and decisions (`requests` scope, acting as a directory
 * user as for access requests: a personal token, or `X-Act-As` from an admin or `requests:act-as`
 * token).
 */
import { Readable } from 'node:stream';
import type { FastifyPluginAsync } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import {
  CampaignBodySchema,
  CampaignError,
  createCampaign,
  deleteReviewSchedule,
  getCampaign,
  listCampaigns,
  listItems,
  listReviewSchedules,
  REPORT_CSV_COLUMNS,
  reportCsvPreamble,
  reportCsvRecord,
  reportItems,
  resolveCampaign,
  reviewsOf,
  saveReviewSchedule,
  scheduleCadence,
  type CampaignBody,
  type CampaignReport,
  type ItemStatus,
  type ReviewDecision,
  type ReviewScheduleSpec,
} from '../../../core/access/reviews.js';
import { verifyAuditChain } from '../../../core/audit/chain.js';
import { csvField } from '../../../core/audit/chain.js';
import { ensureReviewSchedule, reviewScheduleId, triggerReviewSchedule } from '../../../workflows/client.js';
import { actingUser } from '../../acting-user.js';
import { decideReviewsAs } from '../../review-decisions.js';
import { sendApiError as fail } from './errors.js';
import { apiErrors, ApiError, DateTime, Nullable, Open, StringEnum } from '../schemas.js';

const IdParams = Type.Object({ id: Type.String({ format: 'uuid' }) });
const NameParams = Type.Object({ name: Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$' }) });
const actAsHeader = Type.Object({
  'x-act-as': Type.Optional(Type.String({ description: 'userName or id of the user to act as (admin or requests:act-as tokens only)' })),
});

const Progress = Open({ total: Type.Integer(), pending: Type.Integer(), kept: Type.Integer(), revoked: Type.Integer() });

const Campaign = Open({
  id: Type.String({ format: 'uuid' }),
  name: Type.String(),
  schedule: Nullable(Type.String(), 'the review schedule that opened it'),
  spec: Open({}, { description: 'the settings it was opened with (users, groups and entitlements as ids)' }),
  status: StringEnum(['generating', 'open', 'escalated', 'closed']),
  startsAt: DateTime(),
  dueAt: DateTime(),
  escalatedUntil: Nullable(DateTime()),
  workflowId: Type.String({ description: 'its certification workflow in Temporal' }),
  createdBy: Type.String(),
  generatedAt: Nullable(DateTime()),
  closedAt: Nullable(DateTime()),
  createdAt: DateTime(),
  progress: Progress,
});

const Item = Open({
  id: Type.String({ format: 'uuid' }),
  campaignId: Type.String(),
  campaign: Type.String(),
  userId: Type.String(),
  userName: Type.String(),
  entitlementId: Type.String(),
  entitlement: Type.String({ description: '"connectorId/name"' }),
  reasons: Type.Array(Type.String(), { description: 'why the user holds it: rule:<name>, manual, request:<id>, invitation:<id>, reconcile (nobody granted it)' }),
  birthright: Type.Boolean({ description: 'a rule gives it: reviewed, but only changing the rule takes it away' }),
  rules: Type.Array(Type.String()),
  ungranted: Type.Boolean({ description: 'found in the target by reconciliation; nobody granted it' }),
  reviewerIds: Type.Array(Type.String()),
  reviewers: Type.Array(Type.String()),
  reviewerNote: Nullable(Type.String()),
  status: StringEnum(['pending', 'kept', 'revoked']),
  decision: Nullable(StringEnum(['keep', 'revoke'])),
  decidedBy: Nullable(Type.String(), "the reviewer's userName, or the campaign for items decided by its policy"),
  comment: Nullable(Type.String()),
  decidedAt: Nullable(DateTime()),
  outcome: Nullable(Type.String(), 'what the decision changed'),
  escalated: Type.Boolean(),
});

const ItemRefusal = Type.Composite([ApiError(), Type.Object({ item: Type.Optional(Item) })], { additionalProperties: true, description: 'refused, with the item as it stands' });

const DecisionBody = Type.Object(
  {
    decision: StringEnum(['keep', 'revoke']),
    comment: Type.Optional(Type.String({ maxLength: 4000 })),
  },
  { additionalProperties: false },
);

const { name: _name, ...campaignProperties } = CampaignBodySchema.properties;
const ScheduleBody = {
  type: 'object',
  required: ['campaign', 'schedule'],
  additionalProperties: false,
  properties: {
    campaign: { ...CampaignBodySchema, required: ['scope', 'reviewers', 'durationSeconds'], properties: campaignProperties, description: "the campaign's settings (its name is the schedule's)" },
    schedule: {
      type: 'object',
      additionalProperties: false,
      description: 'exactly one of every, everySeconds and cron (UTC)',
      properties: {
        every: { type: 'string', enum: ['weekly', 'monthly', 'quarterly', 'yearly'], description: 'quarterly: 09:00 UTC on 1 January, April, July and October' },
        everySeconds: { type: 'integer', minimum: 60 },
        cron: { type: 'string', minLength: 9, maxLength: 200 },
      },
    },
  },
} as const;

interface ScheduleBodyType {
  campaign: Omit<CampaignBody, 'name'>;
  schedule: ReviewScheduleSpec;
}

const ReviewSchedule = Open({ name: Type.String(), spec: Open({}), schedule: Open({}), createdAt: DateTime(), updatedAt: DateTime() });

const ReportItem = Open({
  itemId: Type.String(),
  userName: Type.String(),
  userId: Type.String(),
  entitlement: Type.String(),
  reasons: Type.Array(Type.String()),
  birthright: Type.Boolean(),
  ungranted: Type.Boolean(),
  reviewers: Type.Array(Type.String()),
  status: Type.String(),
  decision: Nullable(Type.String()),
  decidedBy: Nullable(Type.String()),
  decidedAt: Nullable(Type.String()),
  comment: Nullable(Type.String()),
  outcome: Nullable(Type.String()),
  removedFromTarget: Nullable(Type.Boolean(), 'for a revocation: whether the access is gone from the target now'),
  refusals: Type.Array(Open({})),
});

const Report = Open({
  campaign: Open({}),
  generatedAt: Type.String(),
  auditChain: Open({ ok: Type.Boolean(), checked: Type.Integer() }, { description: 'the audit chain verified when the report was made' }),
  items: Type.Array(ReportItem),
});

const REPORT_PAGE = 1000;

const accessReviews: FastifyPluginAsync = async (app) => {
  const admin = app.requireScope('admin');
  const requests = app.requireScope('requests');
  const security = [{ bearer: [] }];
  const tags = ['access reviews'];

  // ------------------------------------------------------------------ campaigns (admin)

  app.post<{ Body: CampaignBody & { startsAt?: string } }>(
    '/api/access-reviews',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: 'Open an access review (certification campaign): its certification workflow lists who holds what in scope, asks the reviewers, and applies the policy at the due date',
        body: {
          ...CampaignBodySchema,
          properties: { ...CampaignBodySchema.properties, startsAt: { type: 'string', format: 'date-time', description: 'when it starts (default: now)' } },
        },
        response: { 201: Campaign, ...apiErrors([400], { 400: 'invalid campaign, or a connector, entitlement, user or group it names does not exist' }) },
      },
    },
    async (request, reply) => {
      const { startsAt, ...body } = request.body;
      let spec;
      try {
        spec = await resolveCampaign(app.db, body);
      } catch (err) {
        if (err instanceof CampaignError) return fail(reply, 400, err.message);
        throw err;
      }
      const id = await createCampaign(app.db, spec, request.identity!.name, startsAt ? new Date(startsAt) : undefined);
      app.outbox.kick();
      return reply.code(201).send(await getCampaign(app.db, id));
    },
  );

  app.get<{ Querystring: { limit?: number; offset?: number } }>(
    '/api/access-reviews',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: 'Access reviews, newest first, with their progress',
        querystring: Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })), offset: Type.Optional(Type.Integer({ minimum: 0 })) }),
        response: { 200: Type.Array(Campaign), ...apiErrors([400]) },
      },
    },
    async (request) => await listCampaigns(app.db, request.query.limit ?? 200, request.query.offset ?? 0),
  );

  app.get<{ Params: { id: string } }>(
    '/api/access-reviews/:id',
    { onRequest: admin, schema: { tags, security, summary: 'One access review with its progress', params: IdParams, response: { 200: Campaign, ...apiErrors([400, 404]) } } },
    async (request, reply) => (await getCampaign(app.db, request.params.id)) ?? fail(reply, 404, `no access review ${request.params.id}`),
  );

  app.get<{ Params: { id: string }; Querystring: { status?: ItemStatus; reviewer?: string; limit?: number; offset?: number } }>(
    '/api/access-reviews/:id/items',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: "An access review's items (user × entitlement) with reviewers and decisions",
        params: IdParams,
        querystring: Type.Object({
          status: Type.Optional(StringEnum(['pending', 'kept', 'revoked'])),
          reviewer: Type.Optional(Type.String({ description: 'userName or id: only the items this user reviews' })),
          limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 5000 })),
          offset: Type.Optional(Type.Integer({ minimum: 0 })),
        }),
        response: { 200: Type.Array(Item), ...apiErrors([400, 404], { 404: 'no such access review or reviewer' }) },
      },
    },
    async (request, reply) => {
      if (!(await getCampaign(app.db, request.params.id))) return fail(reply, 404, `no access review ${request.params.id}`);
      let reviewerId: string | undefined;
      if (request.query.reviewer !== undefined) {
        const { rows } = await app.db.query<{ id: string }>('SELECT id FROM users WHERE id::text = $1 OR lower(user_name) = lower($1) LIMIT 1', [request.query.reviewer]);
        if (!rows[0]) return fail(reply, 404, `no user ${request.query.reviewer}`);
        reviewerId = rows[0].id;
      }
      return await listItems(app.db, request.params.id, { status: request.query.status, reviewerId, limit: request.query.limit ?? 1000, offset: request.query.offset ?? 0 });
    },
  );

  app.get<{ Params: { id: string }; Querystring: { format?: 'csv' | 'json' } }>(
    '/api/access-reviews/:id/report',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: "The auditors' report: every item with reviewer, decision, time, comment and resulting change, with the audit chain's verification",
        params: IdParams,
        querystring: Type.Object({ format: Type.Optional(StringEnum(['csv', 'json'], { description: 'default json' })) }),
        response: {
          200: {
            description: 'the report',
            content: {
              'application/json': { schema: Report },
              'text/csv': { schema: { type: 'string', description: `key,value rows (campaign, auditChain, …), a blank line, then a header row ${REPORT_CSV_COLUMNS.join(',')}; CRLF line ends` } },
            },
          },
          ...apiErrors([400, 404]),
        },
      },
    },
    async (request, reply) => {
      const view = await getCampaign(app.db, request.params.id);
      if (!view) return fail(reply, 404, `no access review ${request.params.id}`);
      const { spec, ...campaign } = view;
      const chain = await verifyAuditChain(app.db);
      const head: Pick<CampaignReport, 'campaign' | 'auditChain' | 'generatedAt'> = {
        campaign: { ...campaign, scope: spec.scope, onUnreviewed: spec.onUnreviewed },
        generatedAt: new Date().toISOString(),
        auditChain: chain,
      };
      const id = request.params.id;
      if ((request.query.format ?? 'json') === 'json') {
        const items = [];
        for (let offset = 0; ; offset += REPORT_PAGE) {
          const page = await reportItems(app.db, id, REPORT_PAGE, offset);
          items.push(...page);
          if (page.length < REPORT_PAGE) break;
        }
        return reply.header('content-disposition', `attachment; filename="access-review-${id}.json"`).send({ ...head, items } satisfies CampaignReport);
      }
      const db = app.db;
      const first = await reportItems(db, id, REPORT_PAGE, 0);
      async function* body(): AsyncGenerator<string> {
        yield reportCsvPreamble(head) + `${REPORT_CSV_COLUMNS.map((c) => csvField(c)).join(',')}\r\n` + first.map(reportCsvRecord).join('');
        if (first.length < REPORT_PAGE) return;
        for (let offset = REPORT_PAGE; ; offset += REPORT_PAGE) {
          const page = await reportItems(db, id, REPORT_PAGE, offset);
          if (page.length) yield page.map(reportCsvRecord).join('');
          if (page.length < REPORT_PAGE) return;
        }
      }
      return reply
        .type('text/csv; charset=utf-8')
        .header('content-disposition', `attachment; filename="access-review-${id}.csv"`)
        .send(Readable.from(body(), { objectMode: false }));
    },
  );

  // ------------------------------------------------------------------ schedules (admin)

  app.put<{ Params: { name: string }; Body: ScheduleBodyType }>(
    '/api/access-review-schedules/:name',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: 'Create or replace a review schedule: a Temporal Schedule opens a campaign with these settings at each firing (e.g. quarterly)',
        params: NameParams,
        body: ScheduleBody,
        response: {
          200: { ...ReviewSchedule, description: 'replaced' },
          201: { ...ReviewSchedule, description: 'created' },
          ...apiErrors([400, 503], { 400: 'invalid campaign or schedule', 503: 'Temporal is unreachable: the schedule is saved; PUT it again' }),
        },
      },
    },
    async (request, reply) => {
      let spec;
      let cadence;
      try {
        spec = await resolveCampaign(app.db, { ...request.body.campaign, name: request.params.name });
        cadence = scheduleCadence(request.body.schedule);
      } catch (err) {
        if (err instanceof CampaignError) return fail(reply, 400, err.message);
        throw err;
      }
      const existed = await saveReviewSchedule(app.db, spec, request.body.schedule, request.identity!.name);
      try {
        await ensureReviewSchedule(await app.temporal.client(), app.config.taskQueue, spec.name, cadence);
      } catch (err) {
        if ((err as { code?: number }).code === 3 /* INVALID_ARGUMENT */) return fail(reply, 400, `schedule: ${(err as Error).message}`);
        request.log.warn({ err: (err as Error).message }, 'could not make the Temporal Schedule of a review schedule');
        return fail(reply, 503, 'Temporal is unreachable: the review schedule is saved but its Temporal Schedule is not; PUT it again');
      }
      const saved = (await listReviewSchedules(app.db)).find((s) => s.name === spec.name)!;
      return reply.code(existed ? 200 : 201).send(saved);
    },
  );

  app.get(
    '/api/access-review-schedules',
    { onRequest: admin, schema: { tags, security, summary: 'Review schedules', response: { 200: Type.Array(ReviewSchedule), ...apiErrors([]) } } },
    async () => await listReviewSchedules(app.db),
  );

  app.delete<{ Params: { name: string } }>(
    '/api/access-review-schedules/:name',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: 'Remove a review schedule and its Temporal Schedule (campaigns it opened go on)',
        params: NameParams,
        response: { 204: Type.Unsafe<void>({ type: 'null', description: 'removed' }), ...apiErrors([400, 404, 503]) },
      },
    },
    async (request, reply) => {
      try {
        await ensureReviewSchedule(await app.temporal.client(), app.config.taskQueue, request.params.name, null);
      } catch (err) {
        request.log.warn({ err: (err as Error).message }, 'could not delete the Temporal Schedule of a review schedule');
        return fail(reply, 503, 'Temporal is unreachable; try again later');
      }
      if (!(await deleteReviewSchedule(app.db, request.params.name, request.identity!.name))) return fail(reply, 404, `no review schedule ${request.params.name}`);
      return reply.code(204).send();
    },
  );

  app.post<{ Params: { name: string } }>(
    '/api/access-review-schedules/:name/run',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: 'Open a campaign of the review schedule now, as a firing of its Schedule does',
        params: NameParams,
        response: {
          202: Type.Object({ schedule: Type.String(), scheduleId: Type.String() }, { description: "the Schedule was triggered: the campaign opens in a moment (GET /api/access-reviews lists it with the schedule's name)" }),
          ...apiErrors([400, 404, 503]),
        },
      },
    },
    async (request, reply) => {
      if (!(await listReviewSchedules(app.db)).some((s) => s.name === request.params.name)) return fail(reply, 404, `no review schedule ${request.params.name}`);
      try {
        await triggerReviewSchedule(await app.temporal.client(), request.params.name);
      } catch (err) {
        request.log.warn({ err: (err as Error).message }, 'could not trigger a review schedule');
        return fail(reply, 503, 'Temporal is unreachable (or the Temporal Schedule is missing: PUT the schedule again)');
      }
      return reply.code(202).send({ schedule: request.params.name, scheduleId: reviewScheduleId(request.params.name) });
    },
  );

  // ------------------------------------------------------------------ reviewers

  const people = { tags, security, headers: actAsHeader };
  const decide = async (me: { userId: string; userName: string }, decisions: Array<{ itemId: string; decision: ReviewDecision; comment?: string | undefined }>, log: typeof app.log) =>
    await decideReviewsAs({ db: app.db, temporal: app.temporal, log, kickOutbox: () => app.outbox.kick() }, me, decisions);

  app.get<{ Querystring: { limit?: number; offset?: number } }>(
    '/api/reviews',
    {
      onRequest: requests,
      schema: {
        ...people,
        summary: 'The items waiting on the acting user in open access reviews',
        querystring: Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 5000 })), offset: Type.Optional(Type.Integer({ minimum: 0 })) }),
        response: { 200: Type.Array(Item), ...apiErrors([400]) },
      },
    },
    async (request, reply) => {
      const me = await actingUser(app.db, request, reply);
      if (!me) return reply;
      return await reviewsOf(app.db, me.userId, request.query.limit ?? 500, request.query.offset ?? 0);
    },
  );

  app.post<{ Params: { id: string }; Body: Static<typeof DecisionBody> }>(
    '/api/reviews/:id/decision',
    {
      onRequest: requests,
      schema: {
        ...people,
        summary: 'Keep or revoke one item as its reviewer; revoking ends the grants behind it and userSync takes the access away',
        params: IdParams,
        body: DecisionBody,
        response: {
          200: Item,
          ...apiErrors([400, 404], { 404: 'no such item' }),
          403: { ...ItemRefusal, description: 'not a reviewer of the item, or the item is your own access' },
          409: { ...ItemRefusal, description: 'decided already, the review is closed, or the access is given by a rule (change the rule)' },
        },
      },
    },
    async (request, reply) => {
      const me = await actingUser(app.db, request, reply);
      if (!me) return reply;
      const [r] = await decide(me, [{ itemId: request.params.id, decision: request.body.decision, comment: request.body.comment }], request.log);
      if (r!.ok) return r!.item;
      return reply.code(r!.status).send({ statusCode: r!.status, error: r!.status === 403 ? 'Forbidden' : r!.status === 404 ? 'Not Found' : 'Conflict', message: r!.message, ...(r!.item ? { item: r!.item } : {}) });
    },
  );

  const BulkResult = Open({
    itemId: Type.String(),
    ok: Type.Boolean(),
    status: Type.Integer({ description: '200, or the refusal: 403, 404 or 409' }),
    message: Type.Optional(Type.String()),
    item: Type.Optional(Item),
  });

  app.post<{ Body: { decisions: Array<{ item: string; decision: ReviewDecision; comment?: string }> } }>(
    '/api/reviews/decisions',
    {
      onRequest: requests,
      schema: {
        ...people,
        summary: 'Keep or revoke many items at once (each decided on its own, by the same rules); answers each outcome',
        body: Type.Object(
          {
            decisions: Type.Array(
              Type.Object(
                { item: Type.String({ format: 'uuid' }), decision: StringEnum(['keep', 'revoke']), comment: Type.Optional(Type.String({ maxLength: 4000 })) },
                { additionalProperties: false },
              ),
              { minItems: 1, maxItems: 1000 },
            ),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ results: Type.Array(BulkResult) }), ...apiErrors([400]) },
      },
    },
    async (request, reply) => {
      const me = await actingUser(app.db, request, reply);
      if (!me) return reply;
      const results = await decide(me, request.body.decisions.map((d) => ({ itemId: d.item, decision: d.decision, comment: d.comment })), request.log);
      return {
        results: results.map((r) =>
          r.ok ? { itemId: r.itemId, ok: true, status: 200, item: r.item } : { itemId: r.itemId, ok: false, status: r.status, message: r.message, ...(r.item ? { item: r.item } : {}) },
        ),
      };
    },
  );
};

export default accessReviews;
