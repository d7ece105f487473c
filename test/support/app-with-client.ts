import { TestClient } from './client';
import { startTestApp, TestApp } from './test-app';

/**
 * The app and one connected client for a `describe` block: started before its tests, closed after
 * them. Read `app` and `client` inside the tests (they exist once `beforeAll` has run).
 */
export function useAppWithClient(opts?: Parameters<typeof startTestApp>[0]): {
  readonly app: TestApp;
  readonly client: TestClient;
} {
  let app: TestApp | undefined;
  let client: TestClient | undefined;
  beforeAll(async () => {
    app = await startTestApp(opts);
    client = await TestClient.connect(app.url);
  });
  afterAll(async () => {
    client?.close();
    await app?.close();
  });
  return {
    get app() {
      return app!;
    },
    get client() {
      return client!;
    },
  };
}
