// Kept only for bench/learn.ts, which imports readGold from here; it lives in cli/gold-file.ts.
export { readGold } from '../gold-file.js';
