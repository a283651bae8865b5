'use strict';
/* eslint-disable @typescript-eslint/no-require-imports -- the harness is CommonJS: it loads before the candidate and hands it require. */
// The harness half of a JavaScript code-verifier run, started by activities/verifiers/sandbox.ts inside the
// sandbox (under Node's permission model): reads the run's nonce from stdin and the test inputs from the
// read-only tests folder, loads the candidate as a script, calls its entry point once per case and writes
// each output, as JSON, to fd 3 prefixed by the nonce. Expected outputs never enter the sandbox: the parent
// compares. The 'done' record comes only after every case ran; without it the run is not a pass.
// usage: node --permission… runner.cjs CANDIDATE TESTS_DIR ENTRY HOOKS(0|1)
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');

const [candidatePath, testsDir, entry, hooks] = process.argv.slice(2);
const nonce = fs.readFileSync(0, 'utf8').trim();
const writeSync = fs.writeSync;
const stringify = JSON.stringify;
const exit = process.exit.bind(process);

function emit(record) {
  writeSync(3, `${nonce} ${stringify(record)}\n`);
}

function describe(error) {
  return (error instanceof Error ? `${error.name}: ${error.message}` : `thrown: ${String(error)}`).slice(0, 300);
}

const cases = [];
for (const name of ['visible.json', 'hidden.json']) cases.push(...JSON.parse(fs.readFileSync(path.join(testsDir, name), 'utf8')));

const protectedRoots = [fs.realpathSync(testsDir), fs.realpathSync(__filename)];
guardTests();
if (hooks === '1') blockNetwork();

main().catch((error) => {
  emit({ t: 'harness', err: describe(error) });
  exit(70);
});

async function main() {
  let fn;
  try {
    if (!/^[A-Za-z_$][\w$]*$/.test(entry)) throw new Error(`not an identifier: ${entry}`);
    const source = fs.readFileSync(candidatePath, 'utf8').replace(/^(\s*)export\s+(?:default\s+)?(?=(?:async\s+)?function|const\s|let\s|var\s|class\s)/gm, '$1');
    globalThis.module = { exports: {} };
    globalThis.exports = globalThis.module.exports;
    globalThis.require = require;
    new vm.Script(source, { filename: 'candidate.js' }).runInThisContext();
    const exported = globalThis.module.exports;
    fn = vm.runInThisContext(`typeof ${entry} === 'function' ? ${entry} : undefined`) ?? (typeof exported === 'function' ? exported : exported?.[entry]);
    if (typeof fn !== 'function') throw new Error(`the program defines no function ${entry}`);
  } catch (error) {
    emit({ t: 'load', err: describe(error), ...(isMemoryError(error) ? { mem: true } : {}) });
    emit({ t: 'done', n: 0 });
    exit(0);
  }
  for (let index = 0; index < cases.length; index++) {
    let payload;
    try {
      let output = fn(...cases[index]);
      if (output && typeof output.then === 'function') output = await output;
      payload = stringify(output === undefined ? null : output, (_key, value) => {
        if (typeof value === 'number' && !Number.isFinite(value)) throw new Error(`not a finite number: ${value}`);
        return value;
      });
    } catch (error) {
      emit({ t: 'case', i: index, err: describe(error), ...(isMemoryError(error) ? { mem: true } : {}) });
      continue;
    }
    writeSync(3, `${nonce} {"t":"case","i":${index},"out":${payload}}\n`);
  }
  emit({ t: 'done', n: cases.length });
  exit(0);
}

function isMemoryError(error) {
  return error instanceof RangeError && /allocation|memory|Invalid (?:array|string) length/i.test(error.message);
}

/** Reports (and refuses) writes to the tests and the harness; the permission model and file modes are the real barrier. */
function guardTests() {
  const isProtected = (value) => {
    if (typeof value !== 'string' && !(value instanceof URL) && !Buffer.isBuffer(value)) return false;
    let resolved = path.resolve(value instanceof URL ? value.pathname : value.toString());
    try {
      resolved = fs.realpathSync(resolved);
    } catch {
      // a path that does not exist yet: compare it as written
    }
    return protectedRoots.some((root) => resolved === root || resolved.startsWith(root + path.sep));
  };
  const writing = (flags) => (typeof flags === 'string' ? /[wa+]/.test(flags) : typeof flags === 'number' && (flags & (fs.constants.O_WRONLY | fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_TRUNC | fs.constants.O_APPEND)) !== 0);
  const mutating = /^(?:write|append|unlink|rm|rmdir|rename|chmod|lchmod|chown|lchown|truncate|copyFile|cp|symlink|link|mkdir|utimes|lutimes|createWriteStream)/;
  const guard = (target, name, check) => {
    const original = target[name];
    if (typeof original !== 'function') return;
    target[name] = function guarded(...args) {
      const hit = check(args);
      if (hit !== undefined) {
        emit({ t: 'tamper', op: name, path: String(hit).slice(0, 200) });
        throw Object.assign(new Error(`${name}: the tests are read-only`), { code: 'EACCES' });
      }
      return original.apply(this, args);
    };
  };
  for (const target of [fs, fs.promises]) {
    for (const name of Object.keys(target)) {
      if (name === 'open' || name === 'openSync') guard(target, name, ([file, flags]) => (writing(flags) && isProtected(file) ? file : undefined));
      else if (mutating.test(name)) guard(target, name, (args) => args.find(isProtected));
    }
  }
}

/** Without a network namespace: refuse sockets at the JavaScript level (the permission model already refuses child processes and native bindings). */
function blockNetwork() {
  const net = require('node:net');
  const dgram = require('node:dgram');
  const refuse = (op) =>
    function refused(...args) {
      emit({ t: 'net', op, addr: String(typeof args[0] === 'object' ? stringify(args[0]) : args[0]).slice(0, 200) });
      throw Object.assign(new Error('no network in the sandbox'), { code: 'EACCES' });
    };
  const seal = (target, name, op) => Object.defineProperty(target, name, { value: refuse(op), writable: false, configurable: false });
  seal(net.Socket.prototype, 'connect', 'socket.connect');
  seal(net.Server.prototype, 'listen', 'socket.listen');
  for (const name of ['bind', 'send', 'connect']) seal(dgram.Socket.prototype, name, `dgram.${name}`);
}
