// What changed between two constitutions, principle by principle.
import { canonicalJsonEqual } from '../json.js';
import type { Constitution, Principle } from './schema.js';

export interface FieldChange {
  field: string;
  before: unknown;
  after: unknown;
}

export interface ConstitutionDiff {
  same: boolean;
  /** Changes outside the principles: name, description, references, defaults, templates. */
  header: FieldChange[];
  added: string[];
  removed: string[];
  changed: { id: string; changes: FieldChange[] }[];
  /** Ids whose position in the list moved (order matters for paper-style numbered constitutions). */
  reordered: string[];
}

export function diffConstitutions(a: Constitution, b: Constitution): ConstitutionDiff {
  const header: FieldChange[] = [];
  for (const field of ['name', 'description', 'references'] as const) {
    if (!canonicalJsonEqual(a[field], b[field])) header.push({ field, before: a[field], after: b[field] });
  }
  for (const key of Object.keys({ ...a.defaults, ...b.defaults }) as (keyof Constitution['defaults'])[]) {
    if (!canonicalJsonEqual(a.defaults[key], b.defaults[key])) header.push({ field: `defaults.${key}`, before: a.defaults[key], after: b.defaults[key] });
  }
  for (const key of Object.keys({ ...a.templates, ...b.templates }) as (keyof Constitution['templates'])[]) {
    if (a.templates[key] !== b.templates[key]) header.push({ field: `templates.${key}`, before: a.templates[key], after: b.templates[key] });
  }

  const before = new Map(a.principles.map((p) => [p.id, p]));
  const after = new Map(b.principles.map((p) => [p.id, p]));
  const added = b.principles.filter((p) => !before.has(p.id)).map((p) => p.id);
  const removed = a.principles.filter((p) => !after.has(p.id)).map((p) => p.id);
  const changed: ConstitutionDiff['changed'] = [];
  for (const principle of b.principles) {
    const old = before.get(principle.id);
    if (!old) continue;
    const changes = principleChanges(old, principle);
    if (changes.length > 0) changed.push({ id: principle.id, changes });
  }
  const keptBefore = a.principles.map((p) => p.id).filter((id) => after.has(id));
  const keptAfter = b.principles.map((p) => p.id).filter((id) => before.has(id));
  const reordered = keptAfter.filter((id, index) => keptBefore[index] !== id);

  return {
    same: header.length === 0 && added.length === 0 && removed.length === 0 && changed.length === 0 && reordered.length === 0,
    header,
    added,
    removed,
    changed,
    reordered,
  };
}

function principleChanges(a: Principle, b: Principle): FieldChange[] {
  const fields = ['critique', 'revision', 'comparisons', 'weight', 'tags'] as const;
  return fields.filter((field) => !canonicalJsonEqual(a[field], b[field])).map((field) => ({ field, before: a[field], after: b[field] }));
}
