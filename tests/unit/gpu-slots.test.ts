// The GPU worker's slot allocator: a job holds as many GPUs as it asks for, jobs wait in arrival
// order for enough free ones, and a request for more than the worker has is refused naming `gpus`.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GpuSlots, gpuRequestError } from '../../activities/trainer.js';

const settled = async <T>(promise: Promise<T>): Promise<boolean> => {
  let done = false;
  void promise.then(
    () => (done = true),
    () => (done = true),
  );
  await new Promise((resolve) => setImmediate(resolve));
  return done;
};

describe('GPU slots', () => {
  it('gives a job as many GPUs as it asks for, and the next jobs wait in order for enough free ones', async () => {
    const slots = new GpuSlots(['0', '1', '2', '3']);
    const first = await slots.acquire(3);
    assert.deepEqual(first, ['0', '1', '2']);
    const big = slots.acquire(2);
    const small = slots.acquire(1);
    // One GPU is free, but the 2-GPU job came first: the 1-GPU job does not overtake it.
    assert.equal(await settled(big), false);
    assert.equal(await settled(small), false);
    slots.release(first);
    assert.deepEqual(await big, ['3', '0']);
    assert.deepEqual(await small, ['1']);
    const rest = await slots.acquire(1);
    assert.deepEqual(rest, ['2']);
  });

  it('refuses more GPUs than the worker has, at once, naming the field', async () => {
    assert.equal(gpuRequestError(2, 1), 'gpus: the job asks for 2 GPUs; this worker has 1');
    assert.equal(gpuRequestError(2, 0), 'gpus: the job asks for 2 GPUs; this worker has 0');
    assert.equal(gpuRequestError(0, 4), 'gpus: expected a whole number of GPUs, 1 or more, got 0');
    assert.equal(gpuRequestError(1, 0), undefined); // a CPU-only worker runs one process
    await assert.rejects(new GpuSlots(['0']).acquire(2), /gpus: the job asks for 2 GPUs; this worker has 1/);
    assert.deepEqual(await new GpuSlots([]).acquire(1), []);
  });

  it('drops a waiting job on cancellation and lets the ones behind it through', async () => {
    const slots = new GpuSlots(['0', '1']);
    const held = await slots.acquire(1);
    const controller = new AbortController();
    const big = slots.acquire(2, controller.signal);
    const small = slots.acquire(1);
    assert.equal(await settled(small), false);
    controller.abort();
    await assert.rejects(big, /cancelled while waiting for GPUs/);
    assert.deepEqual(await small, ['1']);
    slots.release(held);
  });
});
