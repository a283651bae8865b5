// Tool environments a tool-call task can name: the built-in tools (their OpenAI definitions, which
// the rollout sends as `tools`) and how many model calls a rollout may make. Pure data: the tools
// themselves run in ./run.ts.
import { z } from 'zod';

export const builtinToolNames = ['calculator', 'lookup'] as const;
export type BuiltinToolName = (typeof builtinToolNames)[number];

export const toolEnvironmentSchema = z.strictObject({
  tools: z
    .array(z.enum(builtinToolNames, { error: `expected a built-in tool: ${builtinToolNames.map((name) => `'${name}'`).join(' or ')}` }), { error: 'expected tools (a list of built-in tool names)' })
    .min(1, { error: 'expected at least one tool' })
    .refine((names) => new Set(names).size === names.length, { error: 'expected each tool once' }),
  /** Model calls per rollout: a model still calling tools on the last one stops there, unanswered. */
  max_turns: z.number({ error: 'expected max_turns (a whole number from 1 to 16)' }).int().min(1).max(16).default(4),
});
export type ToolEnvironment = z.output<typeof toolEnvironmentSchema>;

/** An OpenAI function-tool definition. */
export interface ToolDefinition {
  type: 'function';
  function: { name: string; description: string; parameters: Record<string, unknown> };
}

const definitions: Record<BuiltinToolName, ToolDefinition> = {
  calculator: {
    type: 'function',
    function: {
      name: 'calculator',
      description: 'Evaluates an arithmetic expression: numbers, + - * / ^ %, parentheses, and sqrt, abs, round, floor, ceil, min, max, exp, log, log10, sin, cos, tan, pi, e.',
      parameters: { type: 'object', properties: { expression: { type: 'string', description: 'e.g. "(17 * 23) / 4"' } }, required: ['expression'] },
    },
  },
  lookup: {
    type: 'function',
    function: {
      name: 'lookup',
      description: 'Looks a fact up in a reference table by its key, e.g. "capital of France" or "price of coffee".',
      parameters: { type: 'object', properties: { key: { type: 'string', description: 'the fact to look up' } }, required: ['key'] },
    },
  },
};

/** The definitions sent with a rollout request, in the environment's order. */
export function toolDefinitions(environment: ToolEnvironment): ToolDefinition[] {
  return environment.tools.map((name) => definitions[name]);
}

/** A tool call as an OpenAI-compatible endpoint returns it (arguments: JSON text). */
export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/** A message of a tool-using conversation after the prompt: an assistant turn (perhaps calling tools) or a tool's result. */
export type TraceMessage = { role: 'assistant'; content: string | null; tool_calls?: ToolCall[] } | { role: 'tool'; tool_call_id: string; name: string; content: string };

/** The tools a tool-call task offers the model: its environment's definitions, else its own `tools` (definitions only, nothing runs). */
export function offeredTools(task: { tools?: unknown[]; environment?: ToolEnvironment }): ToolDefinition[] | undefined {
  if (task.environment) return toolDefinitions(task.environment);
  return task.tools && task.tools.length > 0 ? (task.tools as ToolDefinition[]) : undefined;
}
