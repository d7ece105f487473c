import { Writable } from 'node:stream';
import pino from 'pino';
import { loadConfig } from 'src/config/app-config';
import { PINO_LEVEL, pinoHttpOptions } from './pino-options';

/** A pino logger built from the app's options, writing into an array of parsed lines. */
function capture(env: Record<string, string> = {}) {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  const [options] = pinoHttpOptions(loadConfig(env));
  return { logger: pino(options, sink), options, lines };
}

describe(pinoHttpOptions.name, () => {
  it("maps LOG_LEVEL's Nest names onto pino's levels", () => {
    expect(PINO_LEVEL).toEqual({
      error: 'error',
      warn: 'warn',
      log: 'info',
      debug: 'debug',
      verbose: 'trace',
    });
    expect(capture({ LOG_LEVEL: 'verbose' }).logger.level).toBe('trace');
    expect(capture().logger.level).toBe('info');
  });

  it('writes JSON with a level name and an ISO time, and redacts credentials by name', () => {
    const sut = capture();
    sut.logger.info({ token: 'tok-1', nested: { apiKey: 'sk-2', authorization: 'Bearer x' } }, 'hello');
    expect(sut.lines[0]).toMatchObject({
      level: 'info',
      time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      msg: 'hello',
      token: '[redacted]',
      nested: { apiKey: '[redacted]', authorization: '[redacted]' },
    });
  });

  it('logs a request by method and path only: no query string, no header', () => {
    const { options } = capture();
    const serialize = (options.serializers as Record<string, (v: unknown) => unknown>).req;
    expect(
      serialize({ id: 7, method: 'GET', url: '/ws?token=tok-1', headers: { authorization: 'Bearer tok-1' } }),
    ).toEqual({ id: 7, method: 'GET', path: '/ws' });
  });
});
