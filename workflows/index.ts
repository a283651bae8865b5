// Every workflow the CPU worker registers.
export { smoke } from './smoke.js';
