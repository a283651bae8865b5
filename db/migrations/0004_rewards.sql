ALTER TABLE "rollout_rewards" ADD COLUMN "raw" jsonb DEFAULT '{}'::jsonb NOT NULL;--> statement-breakpoint
ALTER TABLE "rollout_rewards" ADD COLUMN "normalisation" jsonb;--> statement-breakpoint
ALTER TABLE "rollout_rewards" ADD COLUMN "verdict" jsonb;--> statement-breakpoint
ALTER TABLE "rollout_rewards" ADD COLUMN "flags" jsonb DEFAULT '[]'::jsonb NOT NULL;