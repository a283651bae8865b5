// Content hash of a constitution: sha256 over its canonical JSON, so layout and comments in the
// YAML do not make a new version, while any change to a text, weight or template does.
// (Uses node:crypto, so workflow code must not import this file.)
import { createHash } from 'node:crypto';
import type { Constitution } from './schema.js';

/**
 * JSON with the keys of every object sorted, so equal data always gives the same text. Plain data
 * (what constitutions and model requests are) is copied with its keys sorted and written by
 * JSON.stringify; anything JSON.stringify would write differently (undefined or function items,
 * integer-like keys, toJSON, class instances) is spelled out key by key.
 */
export function canonicalJson(value: unknown): string {
  const sorted = sortedCopy(value);
  return sorted === notPlain ? spelledOut(value) : JSON.stringify(sorted);
}

const notPlain = Symbol('not plain data');
const integerLike = /^(?:0|[1-9]\d*)$/;

function sortedCopy(value: unknown): unknown {
  if (typeof value === 'function' || typeof value === 'symbol' || typeof value === 'bigint') return notPlain;
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) {
    const copy = new Array<unknown>(value.length);
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      const sorted = item === undefined ? notPlain : sortedCopy(item);
      if (sorted === notPlain) return notPlain;
      copy[i] = sorted;
    }
    return copy;
  }
  const prototype: unknown = Object.getPrototypeOf(value);
  if ((prototype !== Object.prototype && prototype !== null) || 'toJSON' in value) return notPlain;
  const record = value as Record<string, unknown>;
  const copy: Record<string, unknown> = {};
  for (const key of Object.keys(record).sort()) {
    if (integerLike.test(key) || key === '__proto__') return notPlain;
    const item = record[key];
    if (item === undefined) continue;
    const sorted = sortedCopy(item);
    if (sorted === notPlain) return notPlain;
    copy[key] = sorted;
  }
  return copy;
}

function spelledOut(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(spelledOut).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${spelledOut(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

export function constitutionHash(constitution: Constitution): string {
  return createHash('sha256').update(canonicalJson(constitution)).digest('hex');
}
