/**
 * The parts of Auth0's post-login Action interface that the Actions in this folder use, so the files
 * are type-checked and linted here although Auth0 runs them as plain JavaScript. The full interface
 * is Auth0's (Actions → post-login trigger → event and api objects).
 */
export interface PostLoginEvent {
  user: {
    user_id: string;
    email?: string;
    name?: string;
    app_metadata?: Record<string, unknown> | null;
  };
  request?: {
    query?: Record<string, unknown>;
    /** The Auth0 host the login runs on (its /continue is there). */
    hostname?: string;
  };
  secrets: Record<string, string | undefined>;
}

export interface PostLoginApi {
  access: {
    /** Ends the login with an error; `reason` is shown to the user by the application. */
    deny(reason: string): PostLoginApi;
  };
  redirect: {
    /** Sends the user to `url` (with `query` added); Auth0 adds `state`, and the user comes back at /continue. */
    sendUserTo(url: string, options?: { query?: Record<string, string> }): PostLoginApi;
  };
  user: {
    /** Sets (or, with null, removes) one app_metadata key at the end of the flow. */
    setAppMetadata(key: string, value: unknown): PostLoginApi;
  };
}
