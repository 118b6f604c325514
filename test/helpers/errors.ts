/**
 * Expected failures in connector tests: the error a call fails with, and a record of every message
 * seen so a test can check at the end that none carries a secret.
 */

/** The error `work` rejects or throws with; fails the test when it succeeds. */
export async function failure(work: Promise<unknown> | (() => unknown)): Promise<Error> {
  try {
    await (typeof work === 'function' ? work() : work);
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected the call to fail');
}

export interface ErrorRecorder {
  /** Every message `expectError` saw, in order. */
  messages: string[];
  /** The error `p` fails with, recorded; fails the test unless it is a `type`. */
  expectError: <E extends Error>(p: Promise<unknown>, type: new (...args: never[]) => E) => Promise<E>;
}

export function errorRecorder(): ErrorRecorder {
  const messages: string[] = [];
  return {
    messages,
    expectError: async <E extends Error>(p: Promise<unknown>, type: new (...args: never[]) => E): Promise<E> => {
      const err = await failure(p);
      messages.push(err.message);
      if (!(err instanceof type)) throw new Error(`expected ${type.name}, got ${err.name}: ${err.message}`);
      return err;
    },
  };
}
