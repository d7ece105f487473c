import { useEffect, useState } from 'preact/hooks';
import { clockTime } from '../format';
import type { HistoryRecord } from '../protocol';

interface Props {
  records: readonly HistoryRecord[];
  /** How many records are applied (0: before seq 1). */
  position: number;
  onMove: (position: number) => void;
  loaded: boolean;
}

const SPEEDS = [1, 10, 100];

/** Scrubs through the session's history from seq 1: a slider, steps, and play at a few speeds. */
export function ReplayBar({ records, position, onMove, loaded }: Props) {
  const [playing, setPlaying] = useState(false);
  const [speed, setSpeed] = useState(1);
  const total = records.length;

  useEffect(() => {
    if (!playing) {
      return;
    }
    if (position >= total) {
      setPlaying(false);
      return;
    }
    const timer = setTimeout(() => onMove(Math.min(total, position + speed)), 150);
    return () => clearTimeout(timer);
  }, [playing, position, total, speed, onMove]);

  const current = position > 0 ? records[position - 1] : null;
  return (
    <div class="replay-bar" data-testid="replay-bar">
      <div class="buttons">
        <button type="button" onClick={() => onMove(0)} title="Back to the start">
          «
        </button>
        <button type="button" onClick={() => onMove(Math.max(0, position - 1))} title="One record back">
          ‹
        </button>
        <button type="button" data-testid="replay-play" onClick={() => setPlaying(!playing)}>
          {playing ? 'pause' : 'play'}
        </button>
        <button type="button" onClick={() => onMove(Math.min(total, position + 1))} title="One record on">
          ›
        </button>
        <button type="button" onClick={() => onMove(total)} title="To the latest record">
          »
        </button>
        <select value={speed} onChange={(e) => setSpeed(Number(e.currentTarget.value))} aria-label="Speed">
          {SPEEDS.map((s) => (
            <option key={s} value={s}>
              ×{s}
            </option>
          ))}
        </select>
      </div>
      <input
        type="range"
        min={0}
        max={total}
        value={position}
        data-testid="replay-slider"
        aria-label="Position in the history"
        onInput={(e) => onMove(Number(e.currentTarget.value))}
      />
      <span class="replay-pos" data-testid="replay-position" data-seq={current?.seq ?? 0}>
        {current ? (
          <>
            seq <b>{current.seq}</b> of {records[total - 1]?.seq ?? 0} · {clockTime(current.at)} ·{' '}
            {current.type}
          </>
        ) : (
          `before seq 1 (${total} records${loaded ? '' : ', loading…'})`
        )}
      </span>
    </div>
  );
}
