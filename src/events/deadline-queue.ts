interface Entry<T> {
  key: string;
  due: number;
  value: T;
}

/**
 * Deadlines by key, nearest first: a binary min-heap with lazy deletion. Setting a key again or
 * deleting it leaves its old heap entry behind, recognised as stale (it is no longer the key's
 * current entry) and dropped when it reaches the top; the heap is rebuilt when stale entries
 * outnumber live ones, so replacing one deadline over and over does not grow it without bound.
 */
export class DeadlineQueue<T> {
  private readonly current = new Map<string, Entry<T>>();
  private heap: Array<Entry<T>> = [];

  get size(): number {
    return this.current.size;
  }

  has(key: string): boolean {
    return this.current.has(key);
  }

  /** Sets (or replaces) the deadline of `key`. */
  set(key: string, due: number, value: T): void {
    const entry = { key, due, value };
    this.current.set(key, entry);
    this.push(entry);
    this.compactIfStale();
  }

  delete(key: string): void {
    if (this.current.delete(key)) {
      this.compactIfStale();
    }
  }

  /** Drops every deadline whose value matches. */
  deleteWhere(match: (value: T) => boolean): void {
    for (const [key, entry] of this.current) {
      if (match(entry.value)) {
        this.current.delete(key);
      }
    }
    this.compactIfStale();
  }

  /** The nearest deadline, if any. */
  next(): number | undefined {
    this.dropStaleTop();
    return this.heap[0]?.due;
  }

  /** Removes and returns every entry due at `now` or before, nearest first. */
  takeDue(now: number): Array<{ key: string; due: number; value: T }> {
    const due: Array<Entry<T>> = [];
    for (let top = this.peekLive(); top && top.due <= now; top = this.peekLive()) {
      this.pop();
      this.current.delete(top.key);
      due.push(top);
    }
    return due;
  }

  clear(): void {
    this.current.clear();
    this.heap = [];
  }

  private peekLive(): Entry<T> | undefined {
    this.dropStaleTop();
    return this.heap[0];
  }

  private dropStaleTop(): void {
    while (this.heap.length > 0 && this.current.get(this.heap[0].key) !== this.heap[0]) {
      this.pop();
    }
  }

  private compactIfStale(): void {
    if (this.heap.length > 64 && this.heap.length > 2 * this.current.size) {
      this.heap = [];
      for (const entry of this.current.values()) {
        this.push(entry);
      }
    }
  }

  private push(entry: Entry<T>): void {
    const h = this.heap;
    h.push(entry);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (h[parent].due <= entry.due) {
        break;
      }
      h[i] = h[parent];
      i = parent;
    }
    h[i] = entry;
  }

  private pop(): void {
    const h = this.heap;
    const last = h.pop();
    if (h.length === 0 || !last) {
      return;
    }
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= h.length) {
        break;
      }
      const right = left + 1;
      const child = right < h.length && h[right].due < h[left].due ? right : left;
      if (h[child].due >= last.due) {
        break;
      }
      h[i] = h[child];
      i = child;
    }
    h[i] = last;
  }
}
