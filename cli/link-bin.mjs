// npm links the bins of dependencies into node_modules/.bin, but not the project's own; this
// postinstall step links `tenet` there so `npx tenet` runs this checkout's CLI.
import { existsSync, lstatSync, mkdirSync, rmSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const binDir = path.join(root, 'node_modules', '.bin');
const link = path.join(binDir, 'tenet');
mkdirSync(binDir, { recursive: true });
if (existsSync(link) || lstatSync(link, { throwIfNoEntry: false })) rmSync(link, { force: true });
symlinkSync(path.relative(binDir, path.join(root, 'cli', 'bin.mjs')), link);
