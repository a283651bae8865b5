// Stores constitution versions: one row per distinct content, numbered per name.
import { eq, sql } from 'drizzle-orm';
import type { Constitution } from '../core/constitution/schema.js';
import { constitutionHash } from '../core/constitution/hash.js';
import type { Database } from './pool.js';
import { constitutions, principles } from './schema.js';

export interface StoredConstitution {
  id: number;
  name: string;
  version: number;
  contentHash: string;
  /** False when this content was already stored (the same or an earlier call). */
  created: boolean;
}

export async function storeConstitution(
  db: Database,
  input: { constitution: Constitution; source: string; sourcePath?: string },
): Promise<StoredConstitution> {
  const contentHash = constitutionHash(input.constitution);
  const { name } = input.constitution;
  return db.transaction(async (tx) => {
    // Serialise writers of one name so version numbers stay dense and unique.
    await tx.execute(sql`select pg_advisory_xact_lock(hashtext(${`tenet.constitution:${name}`}))`);
    const existing = await tx
      .select({ id: constitutions.id, version: constitutions.version, name: constitutions.name })
      .from(constitutions)
      .where(eq(constitutions.contentHash, contentHash));
    if (existing[0]) return { ...existing[0], contentHash, created: false };

    const [next] = await tx
      .select({ version: sql<number>`coalesce(max(${constitutions.version}), 0) + 1`.mapWith(Number) })
      .from(constitutions)
      .where(eq(constitutions.name, name));
    const [row] = await tx
      .insert(constitutions)
      .values({
        name,
        version: next?.version ?? 1,
        contentHash,
        source: input.source,
        parsed: input.constitution,
        sourcePath: input.sourcePath ?? null,
      })
      .returning({ id: constitutions.id, version: constitutions.version });
    if (!row) throw new Error('storeConstitution: insert returned no row');
    await tx
      .insert(principles)
      .values(
        input.constitution.principles.map((principle, position) => ({
          constitutionId: row.id,
          key: principle.id,
          position,
          critique: principle.critique ?? null,
          revision: principle.revision ?? null,
          comparisons: principle.comparisons ?? [],
          weight: principle.weight,
          tags: principle.tags,
        })),
      )
      .onConflictDoNothing();
    return { id: row.id, name, version: row.version, contentHash, created: true };
  });
}
