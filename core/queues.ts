// Task queue names. CPU workers run workflows and I/O activities; GPU workers run trainer jobs.
export const taskQueues = { cpu: 'tenet-cpu', gpu: 'tenet-gpu' } as const;
export type QueueName = keyof typeof taskQueues;
