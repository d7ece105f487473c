/** Small formatting helpers the components share. */

export function clockTime(iso: string): string {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toISOString().slice(11, 23);
}

export function duration(ms: number): string {
  if (ms < 1000) {
    return `${Math.max(0, Math.round(ms))} ms`;
  }
  const s = ms / 1000;
  if (s < 60) {
    return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  }
  const m = Math.floor(s / 60);
  if (m < 60) {
    return `${m} min ${Math.round(s % 60)} s`;
  }
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** "in 42 s", "2 s ago"; the page's own clock, which may differ a little from the server's. */
export function countdown(iso: string, now: number): string {
  const left = new Date(iso).getTime() - now;
  return left >= 0 ? `in ${duration(left)}` : `${duration(-left)} ago`;
}

export function json(value: unknown): string {
  if (typeof value === 'string') {
    return value;
  }
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

export function oneLine(value: unknown, max = 120): string {
  const text = (typeof value === 'string' ? value : JSON.stringify(value)) ?? '';
  const flat = text.replace(/\s+/g, ' ');
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}
