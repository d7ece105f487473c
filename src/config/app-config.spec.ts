import { ConfigError, loadConfig } from './app-config';

describe(loadConfig.name, () => {
  it('fills every default from an empty environment', () => {
    expect(loadConfig({})).toEqual({
      port: 3000,
      host: '127.0.0.1',
      apiTokens: [],
      databaseUrl: undefined,
      dataDir: './data',
      modelProvider: 'scripted',
      openai: { apiKey: undefined, baseUrl: undefined, model: 'gpt-4o-mini' },
      llmConcurrency: 8,
      llmRetry: { maxRetries: 4, baseMs: 500, maxMs: 30_000 },
      llmTimeoutMs: 120_000,
      templatesDir: './templates',
      logLevel: 'log',
      logFormat: 'json',
      otel: { endpoint: undefined, serviceName: 'mailroom' },
      maxParamsBytes: 256 * 1024,
      maxQueueSize: 10_000,
      pollIntervalMs: 5_000,
      maxAttempts: 3,
      conversationWindow: 40,
      conversationWindowTokens: undefined,
      mcp: { toolTimeoutMs: 60_000, resultMaxBytes: 100_000 },
      leaseTtlMs: 10_000,
      shutdownGraceMs: 0,
      nodeId: undefined,
      commit: { maxBatch: 64, maxPending: 10_000, lanes: 2 },
    });
  });

  it('reads the MCP call timeout and result limit, and refuses a limit too small to be useful', () => {
    expect(loadConfig({ MCP_TOOL_TIMEOUT_MS: '250', MCP_RESULT_MAX_BYTES: '2048' }).mcp).toEqual({
      toolTimeoutMs: 250,
      resultMaxBytes: 2048,
    });
    expect(() => loadConfig({ MCP_RESULT_MAX_BYTES: '10' })).toThrow(/MCP_RESULT_MAX_BYTES/);
  });

  it('reads numbers and names from their strings', () => {
    const sut = loadConfig({
      PORT: '8080',
      DATABASE_URL: 'postgresql://mailroom@db:5432/mailroom',
      LLM_CONCURRENCY: '2',
      MAX_ATTEMPTS: '5',
      LOG_LEVEL: 'debug',
    });
    expect(sut).toMatchObject({
      port: 8080,
      databaseUrl: 'postgresql://mailroom@db:5432/mailroom',
      llmConcurrency: 2,
      maxAttempts: 5,
      logLevel: 'debug',
    });
  });

  it('listens on every interface only when tokens are set, unless HOST says otherwise', () => {
    expect(loadConfig({ API_TOKENS: ' a , b,' })).toMatchObject({ apiTokens: ['a', 'b'], host: '0.0.0.0' });
    expect(loadConfig({ API_TOKENS: 'a', HOST: '127.0.0.1' }).host).toBe('127.0.0.1');
    expect(loadConfig({ API_TOKENS: '' })).toMatchObject({ apiTokens: [], host: '127.0.0.1' });
  });

  it('treats an empty DATABASE_URL as none (the embedded database)', () => {
    expect(loadConfig({ DATABASE_URL: '' }).databaseUrl).toBeUndefined();
  });

  it('picks the openai provider when an API key is set, unless told otherwise', () => {
    expect(loadConfig({ OPENAI_API_KEY: '' }).modelProvider).toBe('scripted');
    expect(loadConfig({ OPENAI_API_KEY: 'sk-test', MODEL_PROVIDER: 'scripted' }).modelProvider).toBe(
      'scripted',
    );
    expect(loadConfig({ MODEL_PROVIDER: 'openai' }).modelProvider).toBe('openai');
    expect(loadConfig({ OPENAI_API_KEY: 'sk-test' })).toMatchObject({
      modelProvider: 'openai',
      openai: { apiKey: 'sk-test' },
    });
  });

  it('logs JSON unless stdout is a terminal or LOG_FORMAT says otherwise', () => {
    expect(loadConfig({}, { stdoutIsTTY: false }).logFormat).toBe('json');
    expect(loadConfig({}, { stdoutIsTTY: true }).logFormat).toBe('pretty');
    expect(loadConfig({ LOG_FORMAT: 'json' }, { stdoutIsTTY: true }).logFormat).toBe('json');
    expect(loadConfig({ LOG_FORMAT: 'pretty' }).logFormat).toBe('pretty');
    expect(() => loadConfig({ LOG_FORMAT: 'xml' })).toThrow(/LOG_FORMAT: /);
  });

  it('exports traces only when an OTLP endpoint is given', () => {
    expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: '' }).otel.endpoint).toBeUndefined();
    expect(
      loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_SERVICE_NAME: 'mr-1' }).otel,
    ).toEqual({ endpoint: 'http://collector:4318', serviceName: 'mr-1' });
    expect(() => loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'not a url' })).toThrow(
      /OTEL_EXPORTER_OTLP_ENDPOINT: /,
    );
  });

  it('reads the lease TTL and the node id of several servers, and refuses a TTL too short to renew', () => {
    expect(loadConfig({ LEASE_TTL_MS: '2000', NODE_ID: 'node-a', SHUTDOWN_GRACE_MS: '5000' })).toMatchObject({
      leaseTtlMs: 2000,
      nodeId: 'node-a',
      shutdownGraceMs: 5000,
    });
    expect(() => loadConfig({ LEASE_TTL_MS: '10' })).toThrow(/LEASE_TTL_MS: /);
    expect(
      loadConfig({ COMMIT_BATCH_MAX: '8', COMMIT_PENDING_MAX: '100', COMMIT_LANES: '3' }).commit,
    ).toEqual({
      maxBatch: 8,
      maxPending: 100,
      lanes: 3,
    });
    expect(() => loadConfig({ COMMIT_BATCH_MAX: '0' })).toThrow(/COMMIT_BATCH_MAX: /);
    expect(() => loadConfig({ NODE_ID: 'a b' })).toThrow(/NODE_ID: /);
  });

  it.each([['abc'], ['70000'], ['-1'], ['80.5']])('fails with a clear message for PORT=%s', (port) => {
    expect(() => loadConfig({ PORT: port })).toThrow(ConfigError);
    expect(() => loadConfig({ PORT: port })).toThrow(/^Invalid configuration:\n {2}PORT: /);
  });

  it('names every invalid variable in one message', () => {
    let error: unknown;
    try {
      loadConfig({ PORT: 'abc', DATABASE_URL: 'mysql://x', LOG_LEVEL: 'loud', LLM_CONCURRENCY: '0' });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as Error).message;
    expect(message.split('\n')[0]).toBe('Invalid configuration:');
    for (const name of ['PORT', 'DATABASE_URL', 'LOG_LEVEL', 'LLM_CONCURRENCY']) {
      expect(message).toContain(`  ${name}: `);
    }
    expect(message).toContain('must be a postgres:// URL');
  });
});
