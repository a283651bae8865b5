// The GPU ids of a GPU worker, handed out to its trainer jobs.
import { CancelledFailure } from '@temporalio/activity';

/**
 * Hands out the worker's GPU ids to concurrent jobs: a job holds as many as it asks for until it
 * ends; jobs that find too few free wait, first come first served (a big job is not overtaken by
 * small ones). A CPU-only worker hands out none.
 */
export class GpuSlots {
  private readonly free: string[];
  private readonly waiting: { count: number; resolve: (gpus: string[]) => void }[] = [];
  constructor(private readonly gpus: string[]) {
    this.free = [...gpus];
  }
  /** `count` GPU ids once that many are free; rejects at once when the worker has fewer in all, or on `signal`. */
  acquire(count: number, signal?: AbortSignal): Promise<string[]> {
    const refused = gpuRequestError(count, this.gpus.length);
    if (refused) return Promise.reject(new Error(refused));
    if (this.gpus.length === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      const waiter = { count, resolve };
      this.waiting.push(waiter);
      signal?.addEventListener(
        'abort',
        () => {
          const at = this.waiting.indexOf(waiter);
          if (at < 0) return;
          this.waiting.splice(at, 1);
          this.grant();
          reject(new CancelledFailure('cancelled while waiting for GPUs'));
        },
        { once: true },
      );
      this.grant();
    });
  }
  release(gpus: string[]): void {
    this.free.push(...gpus);
    this.grant();
  }
  private grant(): void {
    while (this.waiting.length > 0 && this.waiting[0]!.count <= this.free.length) {
      const next = this.waiting.shift()!;
      next.resolve(this.free.splice(0, next.count));
    }
  }
}

/** Why a job asking for `requested` GPUs cannot run on a worker with `available` (a CPU-only worker runs one process), or undefined. */
export function gpuRequestError(requested: number, available: number): string | undefined {
  if (!Number.isInteger(requested) || requested < 1) return `gpus: expected a whole number of GPUs, 1 or more, got ${requested}`;
  if (requested > Math.max(1, available)) return `gpus: the job asks for ${requested} GPUs; this worker has ${available}`;
  return undefined;
}
