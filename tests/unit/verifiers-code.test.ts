// The code verdict on synthetic sandbox reports: what counts as a pass, and every way a report is refused.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { extractProgram, judgeCodeRun, outputsEqual, type CodeTests, type SandboxRun } from '../../core/verifiers/code.js';

const nonce = 'a1b2c3';
const tests: CodeTests = { visible: [{ args: [2], expected: 4 }], hidden: [{ args: [3], expected: 9 }] };
const record = (value: object) => `${nonce} ${JSON.stringify(value)}\n`;
const passing = record({ t: 'case', i: 0, out: 4 }) + record({ t: 'case', i: 1, out: 9 }) + record({ t: 'done', n: 2 });

function run(channel: string, overrides: Partial<SandboxRun> = {}): SandboxRun {
  return { nonce, channel, exit: { code: 0, signal: null }, timedOut: false, outputLimit: false, stderrTail: '', changedFiles: [], durationMs: 10, ...overrides };
}
const code = (sandboxRun: SandboxRun) => judgeCodeRun(sandboxRun, tests).reason.code;

describe('code verdicts', () => {
  it('pass only with one result per case and the harness done', () => {
    assert.deepEqual(judgeCodeRun(run(passing), tests).reward, 1);
    assert.equal(code(run(record({ t: 'case', i: 0, out: 4 }))), 'tamper', 'exit 0 without done');
    assert.equal(code(run(record({ t: 'case', i: 0, out: 4 }) + record({ t: 'done', n: 1 }))), 'tamper', 'a case skipped');
    assert.equal(code(run(record({ t: 'case', i: 0, out: 4 }) + record({ t: 'done', n: 2 }))), 'tamper', 'a case missing');
  });

  it('refuse records without the nonce, repeated cases and anything after done', () => {
    assert.equal(code(run(passing.replace(`${nonce} {"t":"case","i":1`, 'forged {"t":"case","i":1'))), 'tamper');
    assert.equal(code(run(record({ t: 'case', i: 0, out: 4 }) + record({ t: 'case', i: 0, out: 4 }) + record({ t: 'case', i: 1, out: 9 }) + record({ t: 'done', n: 2 }))), 'tamper');
    assert.equal(code(run(passing + record({ t: 'case', i: 1, out: 9 }))), 'tamper');
    assert.equal(code(run(passing, { changedFiles: ['tests/visible.json'] })), 'tamper');
    assert.equal(code(run(record({ t: 'tamper', op: 'open', path: '../tests/visible.json' }) + passing)), 'tamper');
  });

  it('tell timeouts, memory and crashes apart', () => {
    assert.equal(code(run('', { timedOut: true, exit: { code: null, signal: 'SIGKILL' } })), 'timeout');
    assert.equal(code(run('', { exit: { code: 152, signal: null } })), 'timeout', 'SIGXCPU through the wrappers');
    assert.equal(code(run(record({ t: 'case', i: 0, err: 'MemoryError', mem: true }) + record({ t: 'case', i: 1, out: 9 }) + record({ t: 'done', n: 2 }))), 'memory');
    // A case out of memory, then the CPU limit while the next case fills memory again: memory came first.
    assert.equal(code(run(record({ t: 'case', i: 0, err: 'RangeError: Array buffer allocation failed', mem: true }), { exit: { code: 152, signal: 'SIGXCPU' } })), 'memory');
    assert.equal(code(run(record({ t: 'case', i: 0, out: 4 }), { exit: { code: 152, signal: 'SIGXCPU' } })), 'timeout', 'no memory record: the CPU limit');
    assert.equal(code(run('', { exit: { code: 134, signal: null }, stderrTail: 'FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory' })), 'memory');
    assert.equal(code(run('', { exit: { code: 1, signal: null }, stderrTail: 'Segmentation fault' })), 'error');
    assert.equal(code(run(record({ t: 'load', err: 'SyntaxError: invalid syntax' }) + record({ t: 'done', n: 0 }))), 'error');
  });

  it('flag a pass on the visible cases and a failure on the hidden ones', () => {
    const verdict = judgeCodeRun(run(record({ t: 'case', i: 0, out: 4 }) + record({ t: 'case', i: 1, out: 6 }) + record({ t: 'done', n: 2 })), tests);
    assert.deepEqual([verdict.reward, verdict.reason.code, verdict.flags], [0, 'hardcode-suspect', ['hardcode-suspect']]);
    assert.equal(judgeCodeRun(run(record({ t: 'case', i: 0, out: 4 }) + record({ t: 'case', i: 1, out: 6 }) + record({ t: 'done', n: 2 })), tests, { scoring: 'fraction' }).reward, 0.5);
  });

  it('compare outputs as JSON with numbers within tolerance', () => {
    const tolerance = { rel_tol: 1e-9, abs_tol: 1e-12 };
    assert.equal(outputsEqual(0.3, 0.1 + 0.2, tolerance), true);
    assert.equal(outputsEqual({ a: [1, 2] }, { a: [1, 2.0] }, tolerance), true);
    assert.equal(outputsEqual([1, 2], [2, 1], tolerance), false);
    assert.equal(outputsEqual({ a: 1 }, { a: 1, b: null }, tolerance), false);
    assert.equal(outputsEqual(12, 1.2, tolerance), false);
    assert.equal(outputsEqual('3', 3, tolerance), false);
  });
});

describe('program extraction', () => {
  it('takes the last code block in the language, else the whole response', () => {
    const response = 'Try:\n```python\ndef f(): return 1\n```\nBetter:\n```py\ndef f(): return 2\n```\n```js\nconst f = () => 3;\n```';
    assert.equal(extractProgram(response, 'python'), 'def f(): return 2\n');
    assert.equal(extractProgram(response, 'javascript'), 'const f = () => 3;\n');
    assert.equal(extractProgram('def f(): return 4', 'python'), 'def f(): return 4');
  });
});
