import type { ComponentChildren } from 'preact';
import { useLayoutEffect, useRef, useState } from 'preact/hooks';

interface Props<T> {
  items: readonly T[];
  rowHeight: number;
  /** Height of the scrolling box, in pixels. */
  height: number;
  render: (item: T, index: number) => ComponentChildren;
  /** Keep the view at the end as items are added, while the reader is there. */
  followEnd?: boolean;
  testId?: string;
}

const OVERSCAN = 8;

/**
 * Draws only the rows in view (plus a few), so a list of ten thousand costs what a list of thirty
 * does. Rows have one fixed height.
 */
export function VirtualList<T>({ items, rowHeight, height, render, followEnd, testId }: Props<T>) {
  const box = useRef<HTMLDivElement>(null);
  const [scrollTop, setScrollTop] = useState(0);
  const atEnd = useRef(true);
  const total = items.length * rowHeight;

  useLayoutEffect(() => {
    const el = box.current;
    if (el && followEnd && atEnd.current) {
      el.scrollTop = total;
      setScrollTop(el.scrollTop);
    }
  }, [total, followEnd]);

  const first = Math.max(0, Math.floor(scrollTop / rowHeight) - OVERSCAN);
  const last = Math.min(items.length, Math.ceil((scrollTop + height) / rowHeight) + OVERSCAN);
  const rows: ComponentChildren[] = [];
  for (let i = first; i < last; i += 1) {
    rows.push(
      <div key={i} class="vrow" style={{ top: `${i * rowHeight}px`, height: `${rowHeight}px` }}>
        {render(items[i], i)}
      </div>,
    );
  }
  return (
    <div
      ref={box}
      class="vlist"
      data-testid={testId}
      style={{ height: `${height}px` }}
      onScroll={(e) => {
        const el = e.currentTarget;
        atEnd.current = el.scrollTop + el.clientHeight >= el.scrollHeight - rowHeight;
        setScrollTop(el.scrollTop);
      }}
    >
      <div class="vspace" style={{ height: `${total}px` }}>
        {rows}
      </div>
    </div>
  );
}
