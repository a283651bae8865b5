CREATE TABLE "rollout_rewards" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"run_id" bigint NOT NULL,
	"iteration" integer NOT NULL,
	"completion_id" bigint NOT NULL,
	"group_key" text NOT NULL,
	"reward_model_id" bigint,
	"components" jsonb NOT NULL,
	"total" double precision NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "rollout_rewards" ADD CONSTRAINT "rollout_rewards_run_id_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."runs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "rollout_rewards" ADD CONSTRAINT "rollout_rewards_completion_id_completions_id_fk" FOREIGN KEY ("completion_id") REFERENCES "public"."completions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "rollout_rewards" ADD CONSTRAINT "rollout_rewards_reward_model_id_models_id_fk" FOREIGN KEY ("reward_model_id") REFERENCES "public"."models"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "rollout_rewards_completion" ON "rollout_rewards" USING btree ("completion_id");--> statement-breakpoint
CREATE INDEX "rollout_rewards_run_idx" ON "rollout_rewards" USING btree ("run_id","iteration");