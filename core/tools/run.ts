// Runs a built-in tool on the arguments a model sent. Tools are pure and read-only (the same call
// gives the same result), so a retried rollout replays its tool calls without side effects. Every
// failure becomes a result text the model reads ("error: …"), never an exception.
import math from 'mathjs/lib/browser/math.js';
import type { MathNode } from 'mathjs';
import table from './lookup-table.json' with { type: 'json' };
import type { BuiltinToolName, ToolCall, ToolEnvironment, TraceMessage } from './environment.js';

/** The result text of one call; `ok` false when the call could not be run as asked. */
export interface ToolResult {
  ok: boolean;
  content: string;
}

export function runTool(environment: ToolEnvironment, name: string, rawArguments: unknown): ToolResult {
  if (!(environment.tools as string[]).includes(name)) {
    return { ok: false, content: `error: no tool named ${JSON.stringify(name)} (available: ${environment.tools.join(', ')})` };
  }
  let args: unknown = rawArguments;
  if (typeof rawArguments === 'string') {
    try {
      args = rawArguments.trim() === '' ? {} : JSON.parse(rawArguments);
    } catch {
      return { ok: false, content: 'error: the arguments are not JSON' };
    }
  }
  if (typeof args !== 'object' || args === null || Array.isArray(args)) return { ok: false, content: 'error: the arguments must be a JSON object' };
  return tools[name as BuiltinToolName](args as Record<string, unknown>);
}

const tools: Record<BuiltinToolName, (args: Record<string, unknown>) => ToolResult> = {
  calculator: (args) => (typeof args.expression === 'string' ? calculate(args.expression) : { ok: false, content: 'error: expected {"expression": "<text>"}' }),
  lookup: (args) => (typeof args.key === 'string' ? lookUp(args.key) : { ok: false, content: 'error: expected {"key": "<text>"}' }),
};

const allowedOperators = new Set(['add', 'subtract', 'multiply', 'divide', 'pow', 'mod', 'unaryMinus', 'unaryPlus']);
const allowedFunctions = new Set(['sqrt', 'abs', 'round', 'floor', 'ceil', 'min', 'max', 'exp', 'log', 'log10', 'sin', 'cos', 'tan']);
const constants = new Set(['pi', 'e']);
const maxExpression = 500;

/** The value of a plain arithmetic expression: only numbers, the operators, functions and constants above reach evaluation. */
export function calculate(expression: string): ToolResult {
  const text = expression.replace(/[×·]/g, '*').replace(/÷/g, '/').replace(/[−–]/g, '-').trim();
  if (text === '' || text.length > maxExpression) return { ok: false, content: `error: expected an expression of 1 to ${maxExpression} characters` };
  let root: MathNode;
  try {
    root = math.parse(text);
  } catch (error) {
    return { ok: false, content: `error: cannot parse the expression (${(error as Error).message})` };
  }
  let refused: string | undefined;
  root.traverse((node, _path, parent) => {
    if (refused) return;
    if (node.type === 'ConstantNode') {
      if (typeof (node as { value?: unknown }).value !== 'number') refused = 'only numbers';
    } else if (node.type === 'OperatorNode') {
      if (!allowedOperators.has((node as { fn?: string }).fn ?? '')) refused = `the operator ${(node as { op?: string }).op ?? ''}`;
    } else if (node.type === 'FunctionNode') {
      const fn = (node as { fn?: MathNode }).fn;
      const fnName = fn?.type === 'SymbolNode' ? ((fn as { name?: string }).name ?? '') : '';
      if (!allowedFunctions.has(fnName)) refused = `the function ${fnName || '(expression)'}`;
    } else if (node.type === 'SymbolNode') {
      const symbol = (node as { name?: string }).name ?? '';
      const isFunctionName = parent?.type === 'FunctionNode' && (parent as { fn?: MathNode }).fn === node;
      if (!isFunctionName && !constants.has(symbol)) refused = `the name ${symbol}`;
    } else if (node.type !== 'ParenthesisNode') refused = 'this kind of expression';
  });
  if (refused) return { ok: false, content: `error: not allowed: ${refused}` };
  let value: unknown;
  try {
    value = root.compile().evaluate();
  } catch (error) {
    return { ok: false, content: `error: ${(error as Error).message}` };
  }
  if (typeof value !== 'number' || !Number.isFinite(value)) return { ok: false, content: 'error: the result is not a finite number' };
  return { ok: true, content: String(Number(value.toPrecision(12))) };
}

const normaliseKey = (key: string) => key.normalize('NFKC').toLowerCase().replace(/\s+/g, ' ').trim().replace(/[?.!]+$/, '');
const entries = new Map(Object.entries(table.entries).map(([key, value]) => [normaliseKey(key), value]));

export function lookUp(key: string): ToolResult {
  const value = entries.get(normaliseKey(key));
  return value === undefined ? { ok: false, content: `error: no entry for ${JSON.stringify(key.slice(0, 100))}` } : { ok: true, content: value };
}

/** An environment's answer to an assistant message's tool calls: one `role: tool` message per call, in order. */
export function toolMessages(environment: ToolEnvironment, calls: readonly { id: string; function: { name: string; arguments: unknown } }[]): { role: 'tool'; tool_call_id: string; name: string; content: string }[] {
  return calls.map((call) => ({ role: 'tool', tool_call_id: call.id, name: call.function.name, content: runTool(environment, call.function.name, call.function.arguments).content }));
}

/**
 * One model answer in a tool-using rollout: the messages it adds to the trace, and whether the model is
 * asked again — only when it called tools, the task has an environment to run them, and `turnsTaken`
 * (model calls so far, this one included) is below max_turns. Calls that are not run stay in the trace
 * unanswered, for the verifier to score.
 */
export function answerTurn(environment: ToolEnvironment | undefined, turnsTaken: number, answer: { text: string; toolCalls: ToolCall[] | undefined }): { messages: TraceMessage[]; again: boolean } {
  const calls = answer.toolCalls ?? [];
  const assistant: TraceMessage = calls.length > 0 ? { role: 'assistant', content: answer.text === '' ? null : answer.text, tool_calls: calls } : { role: 'assistant', content: answer.text };
  if (calls.length === 0 || environment === undefined || turnsTaken >= environment.max_turns) return { messages: [assistant], again: false };
  return { messages: [assistant, ...toolMessages(environment, calls)], again: true };
}
