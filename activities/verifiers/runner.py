# The harness half of a Python code-verifier run, started by activities/verifiers/sandbox.ts inside the
# sandbox: reads the run's nonce from stdin and the test inputs from the read-only tests folder, loads the
# candidate, calls its entry point once per case and writes each output, as JSON, to fd 3 prefixed by the
# nonce. Expected outputs never enter the sandbox: the parent compares, so a candidate can at most report
# its own outputs. The 'done' record comes only after every case ran; without it the run is not a pass.
# usage: python -I -S runner.py CANDIDATE TESTS_DIR ENTRY HOOKS(0|1)
import json
import os
import sys


def main():
    nonce = sys.stdin.buffer.readline().decode().strip()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    candidate_path, tests_dir, entry, hooks = sys.argv[1:5]
    os.set_blocking(3, True)
    write, exit_now, dumps = os.write, os._exit, json.dumps

    def emit(record):
        data = (nonce + ' ' + dumps(record) + '\n').encode()
        while data:
            data = data[write(3, data):]

    cases = []
    for name in ('visible.json', 'hidden.json'):
        with open(os.path.join(tests_dir, name), 'rb') as tests:
            cases.extend(json.load(tests))
    install_hooks(emit, [os.path.realpath(tests_dir), os.path.realpath(__file__)], hooks == '1')

    namespace = {'__name__': 'candidate', '__builtins__': __builtins__}
    try:
        with open(candidate_path, encoding='utf-8') as candidate:
            exec(compile(candidate.read(), 'candidate.py', 'exec'), namespace)
        function = namespace.get(entry)
        if not callable(function):
            raise LookupError(f'the program defines no function {entry}')
    except MemoryError:
        emit({'t': 'load', 'err': 'MemoryError', 'mem': True})
        emit({'t': 'done', 'n': 0})
        exit_now(0)
    except Exception as error:
        emit({'t': 'load', 'err': describe(error)})
        emit({'t': 'done', 'n': 0})
        exit_now(0)

    # SystemExit and KeyboardInterrupt are not caught: a candidate that exits ends the run without 'done'.
    for index, args in enumerate(cases):
        try:
            output = function(*args)
            payload = dumps(output, allow_nan=False)
        except MemoryError:
            emit({'t': 'case', 'i': index, 'err': 'MemoryError', 'mem': True})
            continue
        except Exception as error:
            emit({'t': 'case', 'i': index, 'err': describe(error)})
            continue
        data = (nonce + ' {"t": "case", "i": ' + str(index) + ', "out": ' + payload + '}\n').encode()
        while data:
            data = data[write(3, data):]
    emit({'t': 'done', 'n': len(cases)})
    exit_now(0)


def describe(error):
    return f'{type(error).__name__}: {error}'[:300]


def install_hooks(emit, protected, block_outside):
    """Reports (and refuses) writes to the tests and the harness; with block_outside, also refuses the network,
    new processes and ctypes, for machines without namespaces. The kernel's permissions are the real barrier."""
    realpath, fspath, sep = os.path.realpath, os.fspath, os.sep
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    mutating = {'os.remove', 'os.rename', 'os.rmdir', 'os.chmod', 'os.chown', 'os.truncate', 'os.utime', 'os.link',
                'os.symlink', 'os.mkdir', 'shutil.rmtree', 'shutil.move', 'shutil.copyfile', 'shutil.copytree'}
    network = {'socket.connect', 'socket.bind', 'socket.sendto', 'socket.sendmsg'}
    processes = {'os.fork', 'os.forkpty', 'os.exec', 'os.posix_spawn', 'os.spawn', 'os.system', 'subprocess.Popen',
                 'os.kill', 'os.killpg', 'ctypes.dlopen', 'ctypes.dlsym'}
    busy = [False]

    def is_protected(value):
        if not isinstance(value, (str, bytes, os.PathLike)):
            return False
        try:
            path = fspath(value)
            path = realpath(path.decode() if isinstance(path, bytes) else path)
        except Exception:
            return False
        return any(path == root or path.startswith(root + sep) for root in protected)

    def refuse(record, message):
        emit(record)
        raise PermissionError(message)

    def hook(event, args):
        if busy[0]:
            return
        busy[0] = True
        try:
            if event == 'open':
                path, mode, flags = args
                writing = (isinstance(mode, str) and any(c in mode for c in 'wax+')) or (isinstance(flags, int) and flags & write_flags)
                if writing and is_protected(path):
                    refuse({'t': 'tamper', 'op': 'open', 'path': str(path)[:200]}, 'the tests are read-only')
            elif event in mutating:
                for arg in args:
                    if is_protected(arg):
                        refuse({'t': 'tamper', 'op': event, 'path': str(arg)[:200]}, 'the tests are read-only')
            elif block_outside and event in network:
                refuse({'t': 'net', 'op': event, 'addr': str(args[1])[:200] if len(args) > 1 else ''}, 'no network in the sandbox')
            elif block_outside and event in processes:
                refuse({'t': 'blocked', 'op': event}, f'{event} is not allowed in the sandbox')
            elif block_outside and event == 'import' and args[0] in ('ctypes', '_ctypes'):
                refuse({'t': 'blocked', 'op': 'import ' + args[0]}, 'ctypes is not allowed in the sandbox')
        finally:
            busy[0] = False

    sys.addaudithook(hook)


main()
