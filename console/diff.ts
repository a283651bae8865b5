// A side-by-side line diff of two texts (the constitutions page), from jsdiff's line diff: unchanged
// lines on both sides, a removed block next to the added block that replaced it.
import { diffLines } from 'diff';

export interface DiffRow {
  kind: 'same' | 'changed' | 'removed' | 'added';
  left?: { n: number; text: string };
  right?: { n: number; text: string };
}

const linesOf = (value: string) => value.replace(/\n$/, '').split('\n');

export function sideBySide(before: string, after: string): DiffRow[] {
  const rows: DiffRow[] = [];
  let leftN = 0;
  let rightN = 0;
  let removed: string[] = [];
  const flush = (added: string[]) => {
    for (let i = 0; i < Math.max(removed.length, added.length); i++) {
      const left = i < removed.length ? { n: ++leftN, text: removed[i]! } : undefined;
      const right = i < added.length ? { n: ++rightN, text: added[i]! } : undefined;
      rows.push({ kind: left && right ? 'changed' : left ? 'removed' : 'added', left, right });
    }
    removed = [];
  };
  for (const part of diffLines(before, after)) {
    const lines = linesOf(part.value);
    if (part.removed) {
      removed.push(...lines);
    } else if (part.added) {
      flush(lines);
    } else {
      flush([]);
      for (const text of lines) rows.push({ kind: 'same', left: { n: ++leftN, text }, right: { n: ++rightN, text } });
    }
  }
  flush([]);
  return rows;
}
