CREATE TABLE "rater_evaluations" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"eval_key" text NOT NULL,
	"run_id" bigint NOT NULL,
	"gold_name" text NOT NULL,
	"gold_hash" text NOT NULL,
	"gold_pairs" integer NOT NULL,
	"constitution_id" bigint NOT NULL,
	"constitution_hash" text NOT NULL,
	"rater_endpoint" text NOT NULL,
	"rater_model" text NOT NULL,
	"rater_config" jsonb NOT NULL,
	"rater_config_hash" text NOT NULL,
	"metrics" jsonb,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"completed_at" timestamp with time zone
);
--> statement-breakpoint
ALTER TABLE "rater_evaluations" ADD CONSTRAINT "rater_evaluations_run_id_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."runs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "rater_evaluations" ADD CONSTRAINT "rater_evaluations_constitution_id_constitutions_id_fk" FOREIGN KEY ("constitution_id") REFERENCES "public"."constitutions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "rater_evaluations_key" ON "rater_evaluations" USING btree ("eval_key");--> statement-breakpoint
CREATE INDEX "rater_evaluations_run_idx" ON "rater_evaluations" USING btree ("run_id");