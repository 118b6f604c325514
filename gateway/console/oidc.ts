/**
 * OpenID Connect sign-in for the console with openid-client: authorization code flow with PKCE
 * (S256), state and nonce. The issuer's metadata is discovered on first use and kept.
 */
import * as client from 'openid-client';
import type { ConsoleConfig } from '../../core/config.js';

export interface LoginStart {
  url: string;
  state: string;
  nonce: string;
  verifier: string;
}

export class OidcSignIn {
  private config: Promise<client.Configuration> | undefined;

  constructor(
    private readonly settings: NonNullable<ConsoleConfig['oidc']>,
    /** The claim that names the directory user. */
    private readonly wanted: ConsoleConfig['userClaim'],
  ) {}

  private configuration(): Promise<client.Configuration> {
    if (!this.config) {
      const issuer = new URL(this.settings.issuer);
      const auth = this.settings.clientSecret ? client.ClientSecretPost(this.settings.clientSecret) : client.None();
      // Plain HTTP only for an issuer on this machine (config.ts refuses it elsewhere).
      const options = issuer.protocol === 'http:' ? { execute: [client.allowInsecureRequests] } : undefined;
      this.config = client.discovery(issuer, this.settings.clientId, undefined, auth, options);
      // A failed discovery is tried again at the next sign-in.
      this.config.catch(() => (this.config = undefined));
    }
    return this.config;
  }

  async start(redirectUri: string): Promise<LoginStart> {
    const config = await this.configuration();
    const verifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const nonce = client.randomNonce();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: redirectUri,
      scope: 'openid email profile',
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      nonce,
    });
    return { url: url.href, state, nonce, verifier };
  }

  /** The ID token's claims after the code exchange; throws when anything does not check out. */
  async finish(callbackUrl: URL, expected: { state: string; nonce: string; verifier: string }): Promise<Record<string, unknown>> {
    const config = await this.configuration();
    const tokens = await client.authorizationCodeGrant(config, callbackUrl, { pkceCodeVerifier: expected.verifier, expectedState: expected.state, expectedNonce: expected.nonce, idTokenExpected: true });
    const claims = tokens.claims();
    if (!claims) throw new Error('the identity provider sent no ID token');
    if (claims[this.wanted] !== undefined) return claims;
    // Providers may keep scope claims (email) out of the ID token: ask the UserInfo endpoint for the same subject.
    const info = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
    return { ...info, ...claims, [this.wanted]: info[this.wanted], ...(this.wanted === 'email' && 'email_verified' in info ? { email_verified: info.email_verified } : {}) };
  }
}
