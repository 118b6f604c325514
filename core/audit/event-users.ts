/**
 * Which audit events concern a user, as SQL. `audit_event_users` (migration 1732170000009) names
 * the users an event is about: a User event its own resource, an Account or Grant event its user,
 * a Group event the members it adds or removes. Its GIN index covers the Account, Grant and Group
 * events only (migration 1732170000021); a User event is found by its resource id, through the
 * index on (resource_type, resource_id, id).
 */

/** The event types the GIN index over `audit_event_users` covers; the same text as the index's predicate. */
const INDEXED_TYPES = `('Account', 'Grant', 'Group')`;

/**
 * A condition on the audit event aliased `e`: it concerns the user whose id is the text parameter
 * `param` (`$1`, …). Both halves can use an index, and PostgreSQL combines them.
 */
export function eventConcernsUser(param: string): string {
  return `((e.resource_type = 'User' AND e.resource_id = ${param}::text)
          OR (e.resource_type IN ${INDEXED_TYPES} AND audit_event_users(e.resource_type, e.resource_id, e.before, e.after) @> ARRAY[${param}::text]))`;
}
