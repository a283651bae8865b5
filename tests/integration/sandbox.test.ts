// The code verifier's sandbox against real candidates, honest and hostile, in Python and JavaScript: each is
// scored and flagged, and the host is left as it was — no connection reached the test's own listener, no
// process of the run's user survives it, its folder is gone, nothing outside its folder was read.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { homedir, tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { chooseIsolation, runSandboxed, verifyCode, type CodeProgram, type SandboxSettings } from '../../activities/verifiers/sandbox.js';
import { judgeCodeRun, type CodeTests } from '../../core/verifiers/code.js';
import type { Verdict } from '../../core/verifiers/verdict.js';
import { projectRoot } from '../../worker/settings.js';

const tests: CodeTests = {
  visible: [
    { args: [1, 2], expected: 3 },
    { args: [10, -4], expected: 6 },
  ],
  hidden: [
    { args: [100, 23], expected: 123 },
    { args: [0.1, 0.2], expected: 0.3 },
  ],
};
// A short CPU limit keeps busy loops quick; the wall clock is generous so a loaded machine does not turn a
// memory or CPU verdict into a wall-clock one.
const quick = { limits: { wall_ms: 15_000, cpu_s: 1, memory_mb: 128, output_bytes: 1 << 20, processes: 64, file_bytes: 1 << 20, disk_bytes: 4 << 20 } };
const shortWall = { limits: { ...quick.limits, wall_ms: 1_000 } };

/** Processes whose real uid is `uid` (the sandbox's own user for a run). */
function processesOf(uid: number): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const status = readFileSync(`/proc/${entry}/status`, 'utf8');
      if (new RegExp(`^Uid:\\s+${uid}\\s`, 'm').test(status)) found.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

async function verify(program: CodeProgram, settings: SandboxSettings = {}, options = quick): Promise<Verdict> {
  const run = await runSandboxed(program, tests, options.limits, settings);
  assert.equal(existsSync(run.dir), false, 'the run folder is removed');
  if (run.uid !== undefined) {
    assert.deepEqual(processesOf(run.uid), [], 'no process of the run outlives it');
    // As its own user the candidate cannot change the tests at all (elsewhere the hashes catch it).
    assert.deepEqual(run.changedFiles, [], 'the test files are intact');
  }
  return judgeCodeRun(run, tests, options);
}

const python = (source: string): CodeProgram => ({ language: 'python', source, entry: 'add' });
const javascript = (source: string): CodeProgram => ({ language: 'javascript', source, entry: 'add' });

function assertVerdict(result: Verdict, code: string, reward: number, flags: string[] = []): void {
  assert.equal(result.reason.code, code, JSON.stringify(result));
  assert.equal(result.reward, reward, JSON.stringify(result));
  for (const flag of flags) assert.ok(result.flags.includes(flag), `flag ${flag} in ${JSON.stringify(result)}`);
}

describe('code sandbox', () => {
  const leftoversBefore = new Set(readdirSync(tmpdir()).filter((name) => name.startsWith('tenet-sandbox-')));
  after(() => {
    const leftovers = readdirSync(tmpdir()).filter((name) => name.startsWith('tenet-sandbox-') && !leftoversBefore.has(name));
    assert.deepEqual(leftovers, [], 'every run folder is removed');
  });

  it('isolates with namespaces and its own user on this machine', () => {
    const isolation = chooseIsolation('auto');
    if (process.getuid?.() === 0) assert.deepEqual(isolation, { network: 'namespaces', pidNamespace: true, ownUser: true, minimalRoot: true });
    assert.deepEqual(chooseIsolation('hooks'), { network: 'hooks', pidNamespace: false, ownUser: isolation.ownUser, minimalRoot: false });
  });

  describe('honest candidates', () => {
    it('pass in Python and JavaScript', async () => {
      assertVerdict(await verify(python('def add(a, b):\n    return a + b\n')), 'match', 1);
      assertVerdict(await verify(javascript('function add(a, b) { return a + b; }')), 'match', 1);
      assertVerdict(await verify(javascript('export const add = async (a, b) => a + b;')), 'match', 1);
      assertVerdict(await verify(javascript('module.exports = { add: (a, b) => a + b };')), 'match', 1);
    });

    it('fail with the failing cases named, and earn a fraction when the task scores fractions', async () => {
      const wrong = await verify(python('def add(a, b):\n    return a - b if a > 50 else a + b\n'));
      assertVerdict(wrong, 'hardcode-suspect', 0, ['hardcode-suspect']);
      const subtracts = await verify(javascript('function add(a, b) { return a - b; }'));
      assertVerdict(subtracts, 'mismatch', 0);
      assert.deepEqual((subtracts.reason.visible as { failed: number[] }).failed, [0, 1]);
      const run = await runSandboxed(python('def add(a, b):\n    return a * b if a == 1 else a + b\n'), tests, quick.limits);
      assert.equal(judgeCodeRun(run, tests, { scoring: 'fraction' }).reward, 0.75);
    });

    it('report exceptions, unserialisable outputs and programs that do not load', async () => {
      const raises = await verify(python('def add(a, b):\n    raise ValueError("no")\n'));
      assertVerdict(raises, 'mismatch', 0);
      assert.match(JSON.stringify(raises.reason.errors), /ValueError: no/);
      assertVerdict(await verify(python('def add(a, b):\n    return {a, b}\n')), 'mismatch', 0);
      assertVerdict(await verify(python('def add(a, b) return a + b\n')), 'error', 0);
      assertVerdict(await verify(javascript('function plus(a, b) { return a + b; }')), 'error', 0);
    });
  });

  describe('resource limits', () => {
    it('stop a busy loop by CPU time', async () => {
      const result = await verify(python('def add(a, b):\n    while True:\n        pass\n'));
      assertVerdict(result, 'timeout', 0);
      assertVerdict(await verify(javascript('function add() { for (;;) {} }')), 'timeout', 0);
    });

    it('stop a sleeper by the wall clock', async () => {
      const result = await verify(python('import time\ndef add(a, b):\n    time.sleep(60)\n'), {}, shortWall);
      assertVerdict(result, 'timeout', 0);
      assert.equal(result.reason.limit, 'wall');
      assertVerdict(await verify(javascript('function add() { return new Promise(() => setInterval(() => {}, 1000)); }'), {}, shortWall), 'timeout', 0);
    });

    it('stop unbounded allocation', async () => {
      assertVerdict(await verify(python('def add(a, b):\n    hoard = []\n    while True:\n        hoard.append(bytearray(10_000_000))\n')), 'memory', 0);
      assertVerdict(await verify(javascript('function add() { const hoard = []; for (;;) hoard.push(new Array(1e6).fill(1.5)); }')), 'memory', 0);
      assertVerdict(await verify(javascript('function add() { const hoard = []; for (;;) hoard.push(Buffer.alloc(1e7, 1)); }')), 'memory', 0);
    });

    it('take down every process a candidate starts, even ones that leave its session', async () => {
      const result = await verify(
        python(
          [
            'import os, time',
            'def add(a, b):',
            '    if os.fork() == 0:',
            '        os.setsid()',
            '        if os.fork() == 0:',
            '            time.sleep(60)',
            '        os._exit(0)',
            '    return a + b',
          ].join('\n'),
        ),
      );
      // verify() asserts that no process of the run's user is left.
      assert.notEqual(result.reason.code, 'tamper');
    });

    it('show a candidate no host process', async () => {
      // bwrap's init, timeout and the candidate.
      const census = python("import os\ndef add(a, b):\n    return a + b if len([p for p in os.listdir('/proc') if p.isdigit()]) <= 3 else -1\n");
      assertVerdict(await verify(census), 'match', 1);
    });
  });

  describe('network', () => {
    let listener: net.Server;
    let port = 0;
    let connections = 0;
    before(async () => {
      listener = net.createServer((socket) => {
        connections++;
        socket.destroy();
      });
      await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
      port = (listener.address() as net.AddressInfo).port;
    });
    after(() => new Promise<void>((resolve) => listener.close(() => resolve())));

    // Each returns a + b only when it reached the listener, so a connection would turn into a pass.
    const pythonDialer = () =>
      python(`import socket\ndef add(a, b):\n    socket.create_connection(('127.0.0.1', ${port}), timeout=1).close()\n    return a + b\n`);
    const javascriptDialer = () =>
      javascript(`const net = require('net');\nfunction add(a, b) { return new Promise((resolve, reject) => { const s = net.connect(${port}, '127.0.0.1', () => { s.destroy(); resolve(a + b); }); s.on('error', reject); }); }`);

    for (const isolation of ['auto', 'hooks'] as const) {
      it(`is unreachable with isolation '${isolation}'`, async () => {
        const fromPython = await verify(pythonDialer(), { isolation });
        const fromJavascript = await verify(javascriptDialer(), { isolation });
        assert.equal(connections, 0, 'the listener saw no connection');
        assert.equal(fromPython.reward, 0, JSON.stringify(fromPython));
        assert.equal(fromJavascript.reward, 0, JSON.stringify(fromJavascript));
        if (isolation === 'hooks') {
          assert.ok(fromPython.flags.includes('network-attempt'), JSON.stringify(fromPython));
          assert.ok(fromJavascript.flags.includes('network-attempt'), JSON.stringify(fromJavascript));
        }
      });
    }
  });

  describe('file system', () => {
    const marker = `tenet-marker-${randomBytes(8).toString('hex')}`;
    const homeMarker = path.join(homedir(), `.${marker}`);
    before(() => {
      process.env.TENET_SANDBOX_MARKER = marker;
      writeFileSync(homeMarker, marker, { mode: 0o644 });
    });
    after(() => {
      delete process.env.TENET_SANDBOX_MARKER;
      rmSync(homeMarker, { force: true });
    });

    /** Runs `use` while another run (sleeping at load) is under way, with the path of that run's candidate. */
    async function whileAnotherRuns<T>(use: (otherCandidate: string) => Promise<T>): Promise<T> {
      const tag = randomBytes(8).toString('hex');
      const other = runSandboxed(python(`# ${tag}\nimport time\ntime.sleep(3)\ndef add(a, b):\n    return a + b\n`), tests, quick.limits);
      let found: string | undefined;
      for (let tries = 0; found === undefined && tries < 200; tries++) {
        found = readdirSync(tmpdir())
          .filter((name) => name.startsWith('tenet-sandbox-'))
          .map((name) => path.join(tmpdir(), name, 'candidate.py'))
          .find((file) => {
            try {
              return readFileSync(file, 'utf8').includes(tag);
            } catch {
              return false;
            }
          });
        if (found === undefined) await sleep(20);
      }
      assert.ok(found, "the other run's folder appeared");
      try {
        return await use(found);
      } finally {
        await other;
      }
    }

    // Each probe answers a + b only when every outside read failed, no marker is in its environment, nothing
    // outside its folder took a write, and its own folder works; otherwise it raises, naming what got through.
    const outside = (otherCandidate: string) => [path.join(projectRoot, 'package.json'), otherCandidate, '/etc/shadow', '/etc/passwd', '/proc/1/environ', homeMarker];
    const escapes = ['/escape', '/dev/shm/escape', '/sandbox/escape', '/proc/escape'];
    const pythonProbe = (reads: string[]) =>
      python(
        [
          'import os',
          'def add(a, b):',
          '    leaks = []',
          `    for name in ${JSON.stringify(reads)}:`,
          '        try:',
          "            with open(name, 'rb') as f:",
          '                f.read(1)',
          '            leaks.append(name)',
          '        except OSError:',
          '            pass',
          `    for name in ${JSON.stringify(escapes)}:`,
          '        try:',
          "            with open(name, 'wb') as f:",
          "                f.write(b'x')",
          "            leaks.append('wrote ' + name)",
          '        except OSError:',
          '            pass',
          `    if any(${JSON.stringify(marker)} in key + value for key, value in os.environ.items()):`,
          "        leaks.append('environment')",
          "    with open('note.txt', 'w') as f:",
          "        f.write('mine')",
          "    assert open('note.txt').read() == 'mine' and 'def add' in open('../candidate.py').read()",
          '    if leaks:',
          "        raise RuntimeError('read ' + ', '.join(leaks))",
          '    return a + b',
        ].join('\n'),
      );
    const javascriptProbe = (reads: string[]) =>
      javascript(
        [
          "const fs = require('fs');",
          'function add(a, b) {',
          `  const leaks = ${JSON.stringify(reads)}.filter((name) => { try { fs.readFileSync(name); return true; } catch { return false; } });`,
          `  for (const name of ${JSON.stringify(escapes)}) { try { fs.writeFileSync(name, 'x'); leaks.push('wrote ' + name); } catch {} }`,
          `  if (Object.entries(process.env).some(([key, value]) => (key + value).includes(${JSON.stringify(marker)}))) leaks.push('environment');`,
          "  fs.writeFileSync('note.txt', 'mine');",
          "  if (fs.readFileSync('note.txt', 'utf8') !== 'mine' || !fs.readFileSync('../candidate.js', 'utf8').includes('function add')) throw new Error('own folder');",
          "  if (leaks.length > 0) throw new Error('read ' + leaks.join(', '));",
          '  return a + b;',
          '}',
        ].join('\n'),
      );

    it('lets a candidate read nothing outside its folder and the interpreter, in Python and JavaScript', async () => {
      await whileAnotherRuns(async (otherCandidate) => {
        for (const probe of [pythonProbe, javascriptProbe]) {
          assertVerdict(await verify(probe(outside(otherCandidate))), 'match', 1);
        }
      });
    });

    it('catches a read that gets through (the probe without the minimal root)', async () => {
      // Without namespaces the candidate reads what its uid may: another run's candidate (its folder is open to
      // pass through, its files to read), so the probe above would have reported it.
      await whileAnotherRuns(async (otherCandidate) => {
        const result = await verify(pythonProbe([otherCandidate]), { isolation: 'hooks' });
        assertVerdict(result, 'mismatch', 0);
        assert.match(JSON.stringify(result.reason.errors), /read .*candidate\.py/);
      });
    });

    it('caps what a run writes in total, not per file, and each run has its own cap', async () => {
      // disk_bytes 4 MiB, file_bytes 1 MiB: the hog writes 512 KiB files at load until the file system is full and
      // then holds it for a second; the neighbour, at the same time, writes 3 MiB of its own. Each answers a + b
      // only when that happened: the hog met ENOSPC within twice the cap, the neighbour wrote everything.
      const chunk = 512 * 1024;
      const pythonHog = python(
        [
          'import errno, time',
          'written, full = 0, False',
          'try:',
          '    for i in range(16):',
          "        with open(f'hog{i}', 'wb') as f:",
          `            f.write(b'x' * ${chunk})`,
          `        written += ${chunk}`,
          'except OSError as error:',
          '    full = error.errno == errno.ENOSPC',
          '    time.sleep(1)',
          'def add(a, b):',
          '    if not full:',
          "        raise RuntimeError(f'wrote {written} bytes')",
          '    return a + b',
        ].join('\n'),
      );
      const pythonNeighbour = python(
        [
          'import os',
          'for i in range(6):',
          "    with open(f'mine{i}', 'wb') as f:",
          `        f.write(b'y' * ${chunk})`,
          'def add(a, b):',
          `    assert sum(os.path.getsize(f'mine{i}') for i in range(6)) == 6 * ${chunk}`,
          '    return a + b',
        ].join('\n'),
      );
      const javascriptHog = javascript(
        [
          "const fs = require('fs');",
          'let written = 0;',
          'let full = false;',
          'try {',
          `  for (let i = 0; i < 16; i++) { fs.writeFileSync('hog' + i, Buffer.alloc(${chunk}, 120)); written += ${chunk}; }`,
          '} catch (error) {',
          "  full = error.code === 'ENOSPC';",
          '  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000);',
          '}',
          'function add(a, b) {',
          "  if (!full) throw new Error('wrote ' + written + ' bytes');",
          '  return a + b;',
          '}',
        ].join('\n'),
      );
      const javascriptNeighbour = javascript(
        [
          "const fs = require('fs');",
          `for (let i = 0; i < 6; i++) fs.writeFileSync('mine' + i, Buffer.alloc(${chunk}, 121));`,
          'function add(a, b) {',
          `  if ([0, 1, 2, 3, 4, 5].reduce((sum, i) => sum + fs.statSync('mine' + i).size, 0) !== 6 * ${chunk}) throw new Error('short');`,
          '  return a + b;',
          '}',
        ].join('\n'),
      );
      for (const [hog, neighbour] of [
        [pythonHog, pythonNeighbour],
        [javascriptHog, javascriptNeighbour],
      ] as const) {
        const [hogged, neighboured] = await Promise.all([verify(hog), verify(neighbour)]);
        assertVerdict(hogged, 'match', 1);
        assertVerdict(neighboured, 'match', 1);
      }
    });
  });

  describe('tampering', () => {
    // Each tamperer also answers correctly, so only the tamper check stands between it and a pass.
    const testsPath = "os.path.join(os.path.dirname(os.getcwd()), 'tests', 'visible.json')";
    const jsTestsPath = "require('path').join(process.cwd(), '..', 'tests', 'visible.json')";

    for (const [name, program] of [
      ['deletes the visible tests (Python)', python(`import os\ntry:\n    os.remove(${testsPath})\nexcept OSError:\n    pass\ndef add(a, b):\n    return a + b\n`)],
      ['rewrites the visible tests (Python)', python(`import os\ndef add(a, b):\n    try:\n        open(${testsPath}, 'w').write('[]')\n    except OSError:\n        pass\n    return a + b\n`)],
      ['deletes the visible tests (JavaScript)', javascript(`try { require('fs').unlinkSync(${jsTestsPath}); } catch {}\nfunction add(a, b) { return a + b; }`)],
      ['rewrites the visible tests (JavaScript)', javascript(`function add(a, b) { try { require('fs').writeFileSync(${jsTestsPath}, '[]'); } catch {} return a + b; }`)],
      ['exits with 0 before the hidden cases (Python)', python('import sys\ndef add(a, b):\n    if a >= 100:\n        sys.exit(0)\n    return a + b\n')],
      ['exits with 0 at load (Python)', python('import os\nos._exit(0)\ndef add(a, b):\n    return a + b\n')],
      ['exits with 0 before the hidden cases (JavaScript)', javascript('function add(a, b) { if (a >= 100) process.exit(0); return a + b; }')],
      ['patches the harness to skip the hidden cases (Python)', python('import builtins\nreal = builtins.enumerate\nbuiltins.enumerate = lambda xs, start=0: list(real(xs, start))[:2]\ndef add(a, b):\n    return a + b\n')],
      ['writes a fake "done" to the harness channel (Python)', python('import os\nos.write(3, b\'0 {"t": "done", "n": 4}\\n\')\ndef add(a, b):\n    return a + b\n')],
    ] as const) {
      it(`flags a candidate that ${name}`, async () => {
        assertVerdict(await verify(program), 'tamper', 0, ['tamper']);
      });
    }

    it('cannot forge outputs even with the nonce: hidden expectations never enter the sandbox', async () => {
      // Reads the harness's nonce from its frame, reports the visible answers it saw in the prompt plus guesses,
      // then a 'done', and leaves before the harness can run anything.
      const forger = python(
        [
          'import os, sys',
          'def add(a, b):',
          "    nonce = sys._getframe(1).f_locals['nonce']",
          '    lines = [(0, 3), (1, 6), (2, 0), (3, 0)]',
          '    for i, out in lines:',
          "        os.write(3, f'{nonce} {{\"t\": \"case\", \"i\": {i}, \"out\": {out}}}\\n'.encode())",
          "    os.write(3, f'{nonce} {{\"t\": \"done\", \"n\": 4}}\\n'.encode())",
          '    os._exit(0)',
        ].join('\n'),
      );
      const result = await verify(forger);
      assert.equal(result.reward, 0, JSON.stringify(result));
      assertVerdict(result, 'hardcode-suspect', 0, ['hardcode-suspect']);
    });

    it('cannot pass with an object equal to everything: outputs cross as JSON', async () => {
      const flatterer = python('class Yes:\n    def __eq__(self, other):\n        return True\ndef add(a, b):\n    return Yes()\n');
      assertVerdict(await verify(flatterer), 'mismatch', 0);
    });

    it('flags hard-coded visible outputs', async () => {
      const lookup = python('def add(a, b):\n    return {(1, 2): 3, (10, -4): 6}.get((a, b), 0)\n');
      assertVerdict(await verify(lookup), 'hardcode-suspect', 0, ['hardcode-suspect']);
      assertVerdict(await verify(javascript('function add(a, b) { return a === 1 ? 3 : 6; }')), 'hardcode-suspect', 0, ['hardcode-suspect']);
    });

    it('keeps the process exit code out of the verdict', async () => {
      // A candidate that prints a pass and exits 0 at once gets nothing for it.
      assertVerdict(await verify(python('import os\nprint("4 passed, 0 failed")\nos._exit(0)\n')), 'tamper', 0, ['tamper']);
    });
  });

  it('verifyCode judges with the task options and names the isolation', async () => {
    const result = await verifyCode(python('def add(a, b):\n    return a + b\n'), tests, quick);
    assertVerdict(result, 'match', 1);
    assert.equal(result.reason.isolation, chooseIsolation('auto').network);
  });
});
