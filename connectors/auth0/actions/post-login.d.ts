/**
 * The parts of Auth0's post-login Action interface that deny-deprovisioned.js uses, so the file is
 * type-checked and linted here although Auth0 runs it as plain JavaScript. The full interface is
 * Auth0's (Actions → post-login trigger → event and api objects).
 */
export interface PostLoginEvent {
  user: {
    user_id: string;
    email?: string;
    app_metadata?: Record<string, unknown> | null;
  };
}

export interface PostLoginApi {
  access: {
    /** Ends the login with an error; `reason` is shown to the user by the application. */
    deny(reason: string): PostLoginApi;
  };
}
