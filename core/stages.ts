// The stages of the pipeline workflow, in the order they run.
export const pipelineStages = ['sample', 'critique', 'label', 'score', 'rollout'] as const;
export type PipelineStage = (typeof pipelineStages)[number];
