// What every verifier returns: a reward in [0, 1], a machine-readable reason and flags that the
// audit and the reward monitors read (e.g. 'tamper', 'hardcode-suspect', 'multiple-answers').

export interface Verdict<Code extends string = string> {
  reward: number;
  reason: { code: Code } & Record<string, unknown>;
  flags: string[];
}

export function verdict<Code extends string>(reward: number, code: Code, detail: Record<string, unknown> = {}, flags: string[] = []): Verdict<Code> {
  return { reward: Math.min(1, Math.max(0, reward)), reason: { ...detail, code }, flags: [...new Set(flags)] };
}
