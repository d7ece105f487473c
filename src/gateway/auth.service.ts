import { Inject, Injectable } from '@nestjs/common';
import { createHash, timingSafeEqual } from 'node:crypto';
import { APP_CONFIG } from 'src/config/config.module';
import { AppConfig } from 'src/config/app-config';
import { OPEN_OWNER } from 'src/sessions/sessions.service';

/** Who is calling: the owner recorded on the sessions they start. */
export type Principal = string;

/**
 * Bearer tokens (`API_TOKENS`). With none configured the server is open and every caller is
 * {@link OPEN_OWNER}. A token's principal is a digest of it, so tokens themselves are never stored.
 */
@Injectable()
export class AuthService {
  private readonly tokens: Buffer[];

  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    this.tokens = config.apiTokens.map((t) => digest(t));
  }

  get enabled(): boolean {
    return this.tokens.length > 0;
  }

  /** The caller behind a token, or undefined when the token is missing or wrong. */
  authenticate(token: string | undefined): Principal | undefined {
    if (!this.enabled) {
      return OPEN_OWNER;
    }
    if (!token) {
      return undefined;
    }
    const given = digest(token);
    const known = this.tokens.some((t) => timingSafeEqual(t, given));
    return known ? `token:${given.toString('hex').slice(0, 16)}` : undefined;
  }

  /** The token of an `Authorization: Bearer …` header (or undefined). */
  static bearer(header: string | string[] | undefined): string | undefined {
    const value = Array.isArray(header) ? header[0] : header;
    const m = value ? /^Bearer\s+(.+)$/i.exec(value.trim()) : null;
    return m ? m[1].trim() : undefined;
  }
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}
