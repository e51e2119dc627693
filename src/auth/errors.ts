import { TenantError, type TenantErrorOptions } from '../errors.js';

/**
 * The request carries credentials that cannot be verified: a forged, expired or wrong-audience
 * token, an unknown or revoked API key. HTTP 401. Resolution stops here: it never falls through to
 * another strategy. What was wrong is in `cause` (for your logs), not in the message.
 */
export class TenantUnauthenticatedError extends TenantError {
  /** The `WWW-Authenticate` challenge the 401 is sent with (RFC 9110 requires one). */
  readonly challenge: string;
  constructor(message = 'the credentials are not valid', challenge = 'Bearer', options?: TenantErrorOptions) {
    super('LBMT_UNAUTHENTICATED', message, 401, true, options);
    this.challenge = challenge;
  }
}
