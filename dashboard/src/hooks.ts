import { useEffect, useState } from 'preact/hooks';
import { describeError } from './connection';
import type { SessionStore } from './session-store';

/** Draws again whenever the store changes (at most once a frame). */
export function useStore(store: SessionStore | null): number {
  const [, setVersion] = useState(0);
  useEffect(() => store?.subscribe(() => setVersion(store.version)), [store]);
  return store?.version ?? 0;
}

/** The time now, moving on every `ms` while `active`: countdowns and running waits use it. */
export function useNow(ms: number, active = true): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (!active) {
      return;
    }
    const timer = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(timer);
  }, [ms, active]);
  return now;
}

/** A control's last outcome; `run` counts the actions, so a repeated answer still reads as new. */
export type Outcome =
  | { kind: 'idle'; run: number }
  | { kind: 'busy'; run: number }
  | { kind: 'ok'; run: number; text: string }
  | { kind: 'error'; run: number; text: string };

/** A control's last outcome: what it did, or the server's error in plain words. */
export function useAction(): [Outcome, (fn: () => Promise<string>) => void] {
  const [outcome, setOutcome] = useState<Outcome>({ kind: 'idle', run: 0 });
  const run = (fn: () => Promise<string>) => {
    const n = outcome.run + 1;
    setOutcome({ kind: 'busy', run: n });
    fn().then(
      (text) => setOutcome({ kind: 'ok', run: n, text }),
      (err: unknown) => setOutcome({ kind: 'error', run: n, text: describeError(err) }),
    );
  };
  return [outcome, run];
}
