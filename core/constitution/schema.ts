// The constitution file format, as a zod schema. Keys are snake_case in YAML.
import { z } from 'zod';
import { templateKinds, templateSpecs, templateVariables, type TemplateKind } from './templates.js';

const text = (what: string) =>
  z.string({ error: `expected ${what} (a text)` }).trim().min(1, { error: `expected ${what}, got an empty text` });

const principleId = z
  .string({ error: 'expected a principle id (a text)' })
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, { error: "expected an id of letters, digits, '-', '_' or '.'" });

export const principleSchema = z
  .strictObject({
    id: principleId,
    critique: text('a critique request').optional(),
    revision: text('a revision request').optional(),
    comparisons: z
      .array(text('a comparison question'), { error: 'expected a list of comparison questions' })
      .min(1, { error: 'expected at least one comparison question' })
      .optional(),
    weight: z
      .number({ error: 'expected a positive number' })
      .positive({ error: 'expected a positive number' })
      .default(1),
    tags: z.array(text('a tag'), { error: 'expected a list of tags' }).default([]),
  }, { error: 'expected a principle (a mapping with id, critique, revision, comparisons, weight, tags)' })
  .superRefine((principle, ctx) => {
    if ((principle.critique === undefined) !== (principle.revision === undefined)) {
      const missing = principle.critique === undefined ? 'critique' : 'revision';
      ctx.addIssue({
        code: 'custom',
        path: [],
        message: `expected '${missing}' too: critique and revision requests come as a pair`,
      });
    }
    if (principle.critique === undefined && principle.comparisons === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: [],
        message: "expected a critique/revision pair, 'comparisons', or both",
      });
    }
  });

export const defaultsSchema = z.strictObject(
  {
  principle_sampling: z
    .enum(['weighted', 'uniform'], { error: "expected 'weighted' or 'uniform'" })
    .default('weighted'),
  principles_per_comparison: z
    .number({ error: 'expected a whole number of at least 1' })
    .int({ error: 'expected a whole number of at least 1' })
    .min(1, { error: 'expected a whole number of at least 1' })
    .default(1),
  critique_rounds: z
    .number({ error: 'expected a whole number of at least 1' })
    .int({ error: 'expected a whole number of at least 1' })
    .min(1, { error: 'expected a whole number of at least 1' })
    .default(1),
  },
  { error: 'expected a mapping of defaults' },
);

const templatesShape = Object.fromEntries(templateKinds.map((kind) => [kind, text(`a ${kind} template`).optional()])) as Record<
  TemplateKind,
  z.ZodOptional<ReturnType<typeof text>>
>;

export const templatesSchema = z.strictObject(templatesShape, { error: 'expected a mapping of templates' }).superRefine((templates, ctx) => {
  for (const kind of templateKinds) {
    const template = templates[kind];
    if (template === undefined) continue;
    const spec = templateSpecs[kind];
    const used = templateVariables(template);
    for (const use of used) {
      if (!spec.allowed.includes(use.name)) {
        ctx.addIssue({
          code: 'custom',
          path: [kind],
          message: `unknown template variable '{{${use.name}}}' (expected one of: ${spec.allowed.map((v) => `{{${v}}}`).join(', ')})`,
          params: { variable: use.literal },
        });
      }
    }
    for (const name of spec.required) {
      if (!used.some((use) => use.name === name)) {
        ctx.addIssue({ code: 'custom', path: [kind], message: `expected the template to use {{${name}}}` });
      }
    }
  }
});

export const constitutionSchema = z
  .strictObject({
    name: z
      .string({ error: 'expected a name (a text)' })
      .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, { error: "expected a name of letters, digits, '-', '_' or '.'" }),
    description: text('a description'),
    references: z.array(text('a reference'), { error: 'expected a list of references' }).default([]),
    defaults: defaultsSchema.default({ principle_sampling: 'weighted', principles_per_comparison: 1, critique_rounds: 1 }),
    templates: templatesSchema.default({}),
    principles: z
      .array(principleSchema, { error: 'expected a list of principles' })
      .min(1, { error: 'expected at least one principle' }),
  }, { error: 'expected a constitution (a YAML mapping)' })
  .superRefine((constitution, ctx) => {
    const seen = new Map<string, number>();
    constitution.principles.forEach((principle, index) => {
      const first = seen.get(principle.id);
      if (first !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['principles', index, 'id'],
          message: `duplicate principle id '${principle.id}' (first used by principles[${first}])`,
        });
      } else {
        seen.set(principle.id, index);
      }
    });
  });

export type Constitution = z.output<typeof constitutionSchema>;
export type Principle = z.output<typeof principleSchema>;
export type ConstitutionDefaults = z.output<typeof defaultsSchema>;
