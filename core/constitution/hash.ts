// Content hash of a constitution: sha256 over its canonical JSON, so layout and comments in the
// YAML do not make a new version, while any change to a text, weight or template does.
// (Uses node:crypto, so workflow code must not import this file.)
import { createHash } from 'node:crypto';
import type { Constitution } from './schema.js';

export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

export function constitutionHash(constitution: Constitution): string {
  return createHash('sha256').update(canonicalJson(constitution)).digest('hex');
}
