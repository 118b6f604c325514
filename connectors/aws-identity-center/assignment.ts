/**
 * Account-assignment entitlements: a permission set in one AWS account, assigned to the user
 * (PrincipalType USER) through SSO Admin.
 *
 * AWS applies assignments asynchronously: CreateAccountAssignment and DeleteAccountAssignment answer
 * a request status (IN_PROGRESS, SUCCEEDED or FAILED) and provision the role in the account in the
 * background. The connector does not poll. It checks the user's current assignments first, so a
 * finished assignment is `alreadyApplied` without a write; a request still IN_PROGRESS is a
 * TransientError with a short wait, and the engine's retry checks again; FAILED is permanent with
 * AWS's reason.
 */
import {
  CreateAccountAssignmentCommand,
  DeleteAccountAssignmentCommand,
  ListAccountAssignmentsCommand,
  ListAccountAssignmentsForPrincipalCommand,
  type AccountAssignmentOperationStatus,
} from '@aws-sdk/client-sso-admin';
import { PermanentError, TransientError, type Page, type WriteResult } from '@scim-gateway/connector-sdk';
import type { AwsClients } from './client.js';

const what = (op: string, call: string) => `aws-identity-center: ${op}: ${call}`;

/** How long the engine is asked to wait before checking an assignment AWS is still applying. */
export const IN_PROGRESS_RETRY_MS = 2000;
/** Pages of a user's assignments in one account read by one check, at most. */
const MAX_CHECK_PAGES = 50;

export interface AssignmentTarget {
  permissionSet: string;
  accountId: string;
}

/** The user's assignment of the permission set in the account, as Create/DeleteAccountAssignment name it. */
function assignmentOf(instanceArn: string, remoteId: string, target: AssignmentTarget) {
  return {
    InstanceArn: instanceArn,
    TargetId: target.accountId,
    TargetType: 'AWS_ACCOUNT' as const,
    PermissionSetArn: target.permissionSet,
    PrincipalType: 'USER' as const,
    PrincipalId: remoteId,
  };
}

export class AssignmentOperations {
  constructor(
    private readonly aws: AwsClients,
    private readonly opts: { instanceArn: string | undefined; pageSize: number },
  ) {}

  private instance(op: string): string {
    if (!this.opts.instanceArn) {
      throw new PermanentError(`aws-identity-center: ${op}: account assignments need instanceArn in the connector configuration`, 'invalidConfig');
    }
    return this.opts.instanceArn;
  }

  /**
   * The user's account assignments, page by page (in one account when `accountId` is given), or
   * undefined when the user does not exist. At most MAX_CHECK_PAGES pages.
   */
  private async *assignments(op: string, instanceArn: string, remoteId: string, accountId?: string): AsyncGenerator<AssignmentTarget[] | undefined> {
    let token: string | undefined;
    for (let page = 0; page < MAX_CHECK_PAGES; page++) {
      const res = await this.aws.sendExpecting(
        what(op, 'ListAccountAssignmentsForPrincipal'),
        () => this.aws.ssoAdmin.send(new ListAccountAssignmentsForPrincipalCommand({
          InstanceArn: instanceArn,
          PrincipalId: remoteId,
          PrincipalType: 'USER',
          ...(accountId ? { Filter: { AccountId: accountId } } : {}),
          MaxResults: this.opts.pageSize,
          ...(token ? { NextToken: token } : {}),
        })),
        ['ResourceNotFoundException'],
      );
      if ('error' in res) {
        yield undefined;
        return;
      }
      yield (res.ok.AccountAssignments ?? []).flatMap((a) => (a.AccountId && a.PermissionSetArn ? [{ accountId: a.AccountId, permissionSet: a.PermissionSetArn }] : []));
      if (!res.ok.NextToken) return;
      token = res.ok.NextToken;
    }
    throw new PermanentError(`${what(op, 'ListAccountAssignmentsForPrincipal')}: more than ${MAX_CHECK_PAGES} pages of assignments${accountId ? ` in account ${accountId}` : ''}`, 'invalidResponse');
  }

  /**
   * Whether the user holds the assignment now (undefined when the user does not exist). Reads the
   * user's assignments in that one account, which are few.
   */
  private async holds(op: string, remoteId: string, target: AssignmentTarget): Promise<boolean | undefined> {
    for await (const page of this.assignments(op, this.instance(op), remoteId, target.accountId)) {
      if (!page) return undefined;
      if (page.some((a) => a.accountId === target.accountId && a.permissionSet === target.permissionSet)) return true;
    }
    return false;
  }

  /** Turns a request status into the write's answer, or the error that says to come back later. */
  private outcome(op: string, call: string, status: AccountAssignmentOperationStatus | undefined, target: AssignmentTarget): WriteResult {
    switch (status?.Status) {
      case 'SUCCEEDED':
        return { status: 'applied' };
      case 'IN_PROGRESS':
        throw new TransientError(
          `${what(op, call)}: AWS is still applying the assignment of ${target.permissionSet} in account ${target.accountId} (request ${status.RequestId ?? 'unknown'}); checked again on retry`,
          IN_PROGRESS_RETRY_MS,
        );
      case 'FAILED':
        throw new PermanentError(`${what(op, call)} failed: request ${status.RequestId ?? 'unknown'}: ${status.FailureReason ?? 'no reason given'}`, 'rejected');
      default:
        throw new PermanentError(`${what(op, call)} answered no request status`, 'invalidResponse');
    }
  }

  /**
   * SSO Admin documents ConflictException as a write that has not yet propagated (or another
   * operation in progress on the same assignment), to be retried with backoff: transient here.
   */
  private conflictIsTransient(op: string, call: string, err: unknown): Error {
    const classified = this.aws.classify(what(op, call), err);
    return new TransientError(classified.message, IN_PROGRESS_RETRY_MS, { cause: err });
  }

  async grant(remoteId: string, target: AssignmentTarget): Promise<WriteResult> {
    const op = 'grant';
    const instanceArn = this.instance(op);
    if (await this.holds(op, remoteId, target)) return { status: 'alreadyApplied' };
    const res = await this.aws.sendExpecting(
      what(op, 'CreateAccountAssignment'),
      () => this.aws.ssoAdmin.send(new CreateAccountAssignmentCommand(assignmentOf(instanceArn, remoteId, target))),
      ['ConflictException'],
    );
    if ('error' in res) throw this.conflictIsTransient(op, 'CreateAccountAssignment', res.err);
    return this.outcome(op, 'CreateAccountAssignment', res.ok.AccountAssignmentCreationStatus, target);
  }

  async revoke(remoteId: string, target: AssignmentTarget): Promise<WriteResult> {
    const op = 'revoke';
    if (!(await this.holds(op, remoteId, target))) return { status: 'alreadyApplied' };
    return await this.deleteAssignment(op, this.instance(op), remoteId, target);
  }

  /** Deletes an assignment known to be held (a concurrent removal answers alreadyApplied). */
  private async deleteAssignment(op: string, instanceArn: string, remoteId: string, target: AssignmentTarget): Promise<WriteResult> {
    const res = await this.aws.sendExpecting(
      what(op, 'DeleteAccountAssignment'),
      () => this.aws.ssoAdmin.send(new DeleteAccountAssignmentCommand(assignmentOf(instanceArn, remoteId, target))),
      ['ConflictException', 'ResourceNotFoundException'],
    );
    if ('error' in res) {
      if (res.error === 'ResourceNotFoundException') return { status: 'alreadyApplied' };
      throw this.conflictIsTransient(op, 'DeleteAccountAssignment', res.err);
    }
    return this.outcome(op, 'DeleteAccountAssignment', res.ok.AccountAssignmentDeletionStatus, target);
  }

  /**
   * Removes every account assignment the user holds, before the user is deleted: IAM Identity Center
   * keeps a deleted user's assignments, and they would stay listed against an id that no longer
   * exists. Without instanceArn the connector manages no assignments, so there is nothing to remove.
   * An assignment still being applied is a TransientError: the engine retries the whole delete.
   */
  async revokeAll(remoteId: string): Promise<void> {
    const op = 'deleteAccount';
    if (!this.opts.instanceArn) return;
    const instanceArn = this.opts.instanceArn;
    const held: AssignmentTarget[] = [];
    for await (const page of this.assignments(op, instanceArn, remoteId)) {
      if (!page) return;
      held.push(...page);
    }
    // Just listed: each is deleted without being looked up again.
    for (const target of held) await this.deleteAssignment(op, instanceArn, remoteId, target);
  }

  /** One page of the users (PrincipalIds) holding the permission set in the account; the cursor is AWS's NextToken. */
  async listGrants(target: AssignmentTarget, cursor?: string): Promise<Page<string>> {
    const op = 'listGrants';
    const res = await this.aws.send(
      what(op, 'ListAccountAssignments'),
      () => this.aws.ssoAdmin.send(new ListAccountAssignmentsCommand({
        InstanceArn: this.instance(op),
        AccountId: target.accountId,
        PermissionSetArn: target.permissionSet,
        MaxResults: this.opts.pageSize,
        ...(cursor ? { NextToken: cursor } : {}),
      })),
    );
    const items = (res.AccountAssignments ?? []).flatMap((a) => (a.PrincipalType === 'USER' && a.PrincipalId ? [a.PrincipalId] : []));
    return { items, next: res.NextToken || undefined };
  }
}
