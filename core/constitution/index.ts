export * from './schema.js';
export * from './templates.js';
export * from './parse.js';
export * from './diff.js';
