// Types for mathjs's single-file build (its package ships none for this path): a full mathjs instance.
declare module 'mathjs/lib/browser/math.js' {
  import type { MathJsInstance } from 'mathjs';
  const math: MathJsInstance;
  export default math;
}
