/** Assertions shared by the SCIM module tests. */
import { ScimError } from '../../core/scim/errors.js';

/** Runs fn and returns the ScimError it throws; any other outcome fails the test. */
export function scimError(fn: () => unknown): ScimError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ScimError) return err;
    throw err;
  }
  throw new Error('expected a ScimError');
}
