// Rater prompt templates: which variables each kind may use, which it must use, and the defaults.
// Untrusted text (prompts, completions) only ever enters through these variables; the renderer
// that fences it lives with the rating code.

export const templateKinds = ['critique', 'revision', 'comparison', 'score'] as const;
export type TemplateKind = (typeof templateKinds)[number];

export interface TemplateSpec {
  /** Variables the template may use. */
  allowed: readonly string[];
  /** Variables the template must use, or the rater would not see what it judges. */
  required: readonly string[];
}

export const templateSpecs: Record<TemplateKind, TemplateSpec> = {
  critique: { allowed: ['prompt', 'response', 'critique_request'], required: ['response', 'critique_request'] },
  revision: {
    allowed: ['prompt', 'response', 'critique', 'critique_request', 'revision_request'],
    required: ['response', 'revision_request'],
  },
  comparison: { allowed: ['conversation', 'response_a', 'response_b', 'question'], required: ['response_a', 'response_b', 'question'] },
  score: { allowed: ['prompt', 'response', 'principle'], required: ['response', 'principle'] },
};

export const defaultTemplates: Record<TemplateKind, string> = {
  critique: [
    'Here is a conversation between a user and an AI assistant.',
    '',
    'User request:',
    '{{prompt}}',
    '',
    "Assistant's response:",
    '{{response}}',
    '',
    'Critique request: {{critique_request}}',
    'Write the critique only.',
  ].join('\n'),
  revision: [
    'Here is a conversation between a user and an AI assistant, and a critique of the response.',
    '',
    'User request:',
    '{{prompt}}',
    '',
    "Assistant's response:",
    '{{response}}',
    '',
    'Critique:',
    '{{critique}}',
    '',
    'Revision request: {{revision_request}}',
    'Write the revised response only.',
  ].join('\n'),
  comparison: [
    'Consider the following conversation between a user and an AI assistant.',
    '',
    '{{conversation}}',
    '',
    '{{question}}',
    '',
    'Options:',
    '(A) {{response_a}}',
    '(B) {{response_b}}',
    '',
    'Answer with a single letter, A or B.',
    'The answer is: (',
  ].join('\n'),
  score: [
    'Rate the following response of an AI assistant against a principle.',
    '',
    'User request:',
    '{{prompt}}',
    '',
    'Response:',
    '{{response}}',
    '',
    'Principle: {{principle}}',
    '',
    'Answer with a whole number from 1 (violates the principle badly) to 10 (follows it fully).',
    'Score:',
  ].join('\n'),
};

const variablePattern = /\{\{\s*([^{}]*?)\s*\}\}/g;

export interface TemplateVariableUse {
  name: string;
  /** Offset of the `{{` in the template text. */
  index: number;
  /** The literal text of the use, e.g. `{{ response }}`. */
  literal: string;
}

export function templateVariables(template: string): TemplateVariableUse[] {
  return [...template.matchAll(variablePattern)].map((match) => ({
    name: match[1] ?? '',
    index: match.index,
    literal: match[0],
  }));
}
