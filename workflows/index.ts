// Every workflow the CPU worker registers.
export { pipeline } from './pipeline.js';
export { stageShard } from './shard.js';
export { smoke } from './smoke.js';
export { trainerJob } from './train.js';
export { raterEvaluation } from './rater-eval.js';
