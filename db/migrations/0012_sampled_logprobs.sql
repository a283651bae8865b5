ALTER TABLE "completions" ADD COLUMN "sampled_logprobs" double precision[];--> statement-breakpoint
ALTER TABLE "completions" ADD COLUMN "sampled_token_ids" integer[];