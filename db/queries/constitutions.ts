// The stored constitutions: every version per name (`tenet constitution list`), and for the console's
// constitutions page the runs that used each and one version's source for the side-by-side diff.
import { and, asc, desc, eq, isNotNull } from 'drizzle-orm';
import type { Database } from '../pool.js';
import { constitutions, runs } from '../schema.js';

export interface ConstitutionVersion {
  id: number;
  name: string;
  version: number;
  contentHash: string;
  sourcePath: string | null;
  createdAt: Date;
  runs: { id: number; status: string; kind: string }[];
}

/** Every stored version, by name then version (newest first); what `tenet constitution list` prints. */
export async function storedConstitutions(db: Database): Promise<Omit<ConstitutionVersion, 'runs'>[]> {
  return db
    .select({ id: constitutions.id, name: constitutions.name, version: constitutions.version, contentHash: constitutions.contentHash, sourcePath: constitutions.sourcePath, createdAt: constitutions.createdAt })
    .from(constitutions)
    .orderBy(asc(constitutions.name), desc(constitutions.version));
}

/** Every version, by name then version (newest first); the runs of each, newest first (at most `runsPerVersion` shown). */
export async function listConstitutionVersions(db: Database, runsPerVersion = 50): Promise<ConstitutionVersion[]> {
  const versions = await storedConstitutions(db);
  const used = await db
    .select({ id: runs.id, status: runs.status, kind: runs.kind, constitutionId: runs.constitutionId })
    .from(runs)
    .where(isNotNull(runs.constitutionId))
    .orderBy(desc(runs.id));
  const byVersion = new Map<number, ConstitutionVersion['runs']>();
  for (const run of used) {
    const list = byVersion.get(run.constitutionId!) ?? [];
    if (list.length < runsPerVersion) list.push({ id: run.id, status: run.status, kind: run.kind });
    byVersion.set(run.constitutionId!, list);
  }
  return versions.map((v) => ({ ...v, runs: byVersion.get(v.id) ?? [] }));
}

/** One version's stored source text, or undefined. */
export async function constitutionSource(db: Database, name: string, version: number) {
  const [row] = await db
    .select({ id: constitutions.id, name: constitutions.name, version: constitutions.version, contentHash: constitutions.contentHash, source: constitutions.source })
    .from(constitutions)
    .where(and(eq(constitutions.name, name), eq(constitutions.version, version)));
  return row;
}
