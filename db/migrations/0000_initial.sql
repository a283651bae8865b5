CREATE TABLE "completions" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"run_id" bigint NOT NULL,
	"prompt_id" bigint NOT NULL,
	"stage" text NOT NULL,
	"iteration" integer DEFAULT 0 NOT NULL,
	"sample_index" integer NOT NULL,
	"parent_id" bigint,
	"policy_model" text NOT NULL,
	"policy_version" text NOT NULL,
	"text" text NOT NULL,
	"generation_params" jsonb NOT NULL,
	"finish_reason" text,
	"prompt_tokens" integer,
	"completion_tokens" integer,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "constitutions" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"version" integer NOT NULL,
	"content_hash" text NOT NULL,
	"source" text NOT NULL,
	"parsed" jsonb NOT NULL,
	"source_path" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "human_reviews" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"review_key" text NOT NULL,
	"decision_id" bigint,
	"run_id" bigint NOT NULL,
	"prompt_id" bigint NOT NULL,
	"completion_a_id" bigint NOT NULL,
	"completion_b_id" bigint NOT NULL,
	"prefer" text NOT NULL,
	"reason" text NOT NULL,
	"reviewer" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "human_reviews_prefer_known" CHECK ("human_reviews"."prefer" in ('A', 'B', 'tie'))
);
--> statement-breakpoint
CREATE TABLE "metrics" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"run_id" bigint NOT NULL,
	"iteration" integer NOT NULL,
	"name" text NOT NULL,
	"value" double precision NOT NULL,
	"recorded_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "models" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"model_key" text NOT NULL,
	"kind" text NOT NULL,
	"parent_id" bigint,
	"run_id" bigint,
	"iteration" integer,
	"artifact_path" text NOT NULL,
	"constitution_hash" text,
	"lineage" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"hyperparameters" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"metrics" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "models_kind_known" CHECK ("models"."kind" in ('base', 'sft', 'reward', 'policy'))
);
--> statement-breakpoint
CREATE TABLE "preferences" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"run_id" bigint NOT NULL,
	"iteration" integer DEFAULT 0 NOT NULL,
	"prompt_id" bigint NOT NULL,
	"completion_low_id" bigint NOT NULL,
	"completion_high_id" bigint NOT NULL,
	"chosen_id" bigint NOT NULL,
	"rejected_id" bigint NOT NULL,
	"soft_label" double precision NOT NULL,
	"orders_agree" boolean,
	"source" text NOT NULL,
	"decision_ids" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "preferences_pair_ordered" CHECK ("preferences"."completion_low_id" < "preferences"."completion_high_id"),
	CONSTRAINT "preferences_soft_label_range" CHECK ("preferences"."soft_label" >= 0 and "preferences"."soft_label" <= 1)
);
--> statement-breakpoint
CREATE TABLE "principles" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"constitution_id" bigint NOT NULL,
	"key" text NOT NULL,
	"position" integer NOT NULL,
	"critique" text,
	"revision" text,
	"comparisons" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"weight" double precision NOT NULL,
	"tags" jsonb DEFAULT '[]'::jsonb NOT NULL,
	CONSTRAINT "principles_weight_positive" CHECK ("principles"."weight" > 0)
);
--> statement-breakpoint
CREATE TABLE "prompts" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"run_id" bigint NOT NULL,
	"key" text NOT NULL,
	"messages" jsonb NOT NULL,
	"split" text DEFAULT 'train' NOT NULL,
	"metadata" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "rater_decisions" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"run_id" bigint NOT NULL,
	"decision_key" text NOT NULL,
	"stage" text NOT NULL,
	"iteration" integer DEFAULT 0 NOT NULL,
	"constitution_id" bigint NOT NULL,
	"constitution_hash" text NOT NULL,
	"principle_id" bigint NOT NULL,
	"principle_key" text NOT NULL,
	"principle_text" text NOT NULL,
	"prompt_id" bigint NOT NULL,
	"completion_a_id" bigint NOT NULL,
	"completion_b_id" bigint,
	"order" text,
	"rater_endpoint" text NOT NULL,
	"rater_model" text NOT NULL,
	"request" jsonb NOT NULL,
	"raw_response" jsonb NOT NULL,
	"parsed_choice" text,
	"probabilities" jsonb,
	"score" double precision,
	"from_cache" boolean NOT NULL,
	"latency_ms" integer NOT NULL,
	"prompt_tokens" integer,
	"completion_tokens" integer,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "rater_decisions_order_known" CHECK ("rater_decisions"."order" is null or "rater_decisions"."order" in ('AB', 'BA'))
);
--> statement-breakpoint
CREATE TABLE "runs" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"workflow_id" text NOT NULL,
	"kind" text NOT NULL,
	"constitution_id" bigint,
	"config" jsonb NOT NULL,
	"status" text DEFAULT 'pending' NOT NULL,
	"error" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"started_at" timestamp with time zone,
	"finished_at" timestamp with time zone,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "runs_status_known" CHECK ("runs"."status" in ('pending', 'running', 'paused', 'completed', 'failed', 'cancelled'))
);
--> statement-breakpoint
ALTER TABLE "completions" ADD CONSTRAINT "completions_run_id_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."runs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "completions" ADD CONSTRAINT "completions_prompt_id_prompts_id_fk" FOREIGN KEY ("prompt_id") REFERENCES "public"."prompts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "completions" ADD CONSTRAINT "completions_parent_id_completions_id_fk" FOREIGN KEY ("parent_id") REFERENCES "public"."completions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "human_reviews" ADD CONSTRAINT "human_reviews_decision_id_rater_decisions_id_fk" FOREIGN KEY ("decision_id") REFERENCES "public"."rater_decisions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "human_reviews" ADD CONSTRAINT "human_reviews_run_id_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."runs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "human_reviews" ADD CONSTRAINT "human_reviews_prompt_id_prompts_id_fk" FOREIGN KEY ("prompt_id") REFERENCES "public"."prompts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "human_reviews" ADD CONSTRAINT "human_reviews_completion_a_id_completions_id_fk" FOREIGN KEY ("completion_a_id") REFERENCES "public"."completions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "human_reviews" ADD CONSTRAINT "human_reviews_completion_b_id_completions_id_fk" FOREIGN KEY ("completion_b_id") REFERENCES "public"."completions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "metrics" ADD CONSTRAINT "metrics_run_id_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."runs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "models" ADD CONSTRAINT "models_parent_id_models_id_fk" FOREIGN KEY ("parent_id") REFERENCES "public"."models"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "models" ADD CONSTRAINT "models_run_id_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."runs"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "preferences" ADD CONSTRAINT "preferences_run_id_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."runs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "preferences" ADD CONSTRAINT "preferences_prompt_id_prompts_id_fk" FOREIGN KEY ("prompt_id") REFERENCES "public"."prompts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "preferences" ADD CONSTRAINT "preferences_completion_low_id_completions_id_fk" FOREIGN KEY ("completion_low_id") REFERENCES "public"."completions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "preferences" ADD CONSTRAINT "preferences_completion_high_id_completions_id_fk" FOREIGN KEY ("completion_high_id") REFERENCES "public"."completions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "preferences" ADD CONSTRAINT "preferences_chosen_id_completions_id_fk" FOREIGN KEY ("chosen_id") REFERENCES "public"."completions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "preferences" ADD CONSTRAINT "preferences_rejected_id_completions_id_fk" FOREIGN KEY ("rejected_id") REFERENCES "public"."completions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "principles" ADD CONSTRAINT "principles_constitution_id_constitutions_id_fk" FOREIGN KEY ("constitution_id") REFERENCES "public"."constitutions"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "prompts" ADD CONSTRAINT "prompts_run_id_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."runs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "rater_decisions" ADD CONSTRAINT "rater_decisions_run_id_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."runs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "rater_decisions" ADD CONSTRAINT "rater_decisions_constitution_id_constitutions_id_fk" FOREIGN KEY ("constitution_id") REFERENCES "public"."constitutions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "rater_decisions" ADD CONSTRAINT "rater_decisions_principle_id_principles_id_fk" FOREIGN KEY ("principle_id") REFERENCES "public"."principles"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "rater_decisions" ADD CONSTRAINT "rater_decisions_prompt_id_prompts_id_fk" FOREIGN KEY ("prompt_id") REFERENCES "public"."prompts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "rater_decisions" ADD CONSTRAINT "rater_decisions_completion_a_id_completions_id_fk" FOREIGN KEY ("completion_a_id") REFERENCES "public"."completions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "rater_decisions" ADD CONSTRAINT "rater_decisions_completion_b_id_completions_id_fk" FOREIGN KEY ("completion_b_id") REFERENCES "public"."completions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "runs" ADD CONSTRAINT "runs_constitution_id_constitutions_id_fk" FOREIGN KEY ("constitution_id") REFERENCES "public"."constitutions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "completions_item_key" ON "completions" USING btree ("run_id","prompt_id","stage","iteration","policy_version","sample_index");--> statement-breakpoint
CREATE INDEX "completions_prompt_idx" ON "completions" USING btree ("prompt_id");--> statement-breakpoint
CREATE UNIQUE INDEX "constitutions_content_hash_key" ON "constitutions" USING btree ("content_hash");--> statement-breakpoint
CREATE UNIQUE INDEX "constitutions_name_version_key" ON "constitutions" USING btree ("name","version");--> statement-breakpoint
CREATE UNIQUE INDEX "human_reviews_key" ON "human_reviews" USING btree ("review_key");--> statement-breakpoint
CREATE INDEX "human_reviews_decision_idx" ON "human_reviews" USING btree ("decision_id");--> statement-breakpoint
CREATE INDEX "human_reviews_pair_idx" ON "human_reviews" USING btree ("completion_a_id","completion_b_id");--> statement-breakpoint
CREATE UNIQUE INDEX "metrics_run_iteration_name" ON "metrics" USING btree ("run_id","iteration","name");--> statement-breakpoint
CREATE UNIQUE INDEX "models_key" ON "models" USING btree ("model_key");--> statement-breakpoint
CREATE INDEX "models_run_idx" ON "models" USING btree ("run_id");--> statement-breakpoint
CREATE UNIQUE INDEX "preferences_pair_key" ON "preferences" USING btree ("run_id","iteration","completion_low_id","completion_high_id","source");--> statement-breakpoint
CREATE INDEX "preferences_prompt_idx" ON "preferences" USING btree ("prompt_id");--> statement-breakpoint
CREATE UNIQUE INDEX "principles_constitution_key" ON "principles" USING btree ("constitution_id","key");--> statement-breakpoint
CREATE UNIQUE INDEX "prompts_run_key" ON "prompts" USING btree ("run_id","key");--> statement-breakpoint
CREATE UNIQUE INDEX "rater_decisions_key" ON "rater_decisions" USING btree ("run_id","decision_key");--> statement-breakpoint
CREATE INDEX "rater_decisions_run_idx" ON "rater_decisions" USING btree ("run_id","stage","iteration");--> statement-breakpoint
CREATE INDEX "rater_decisions_principle_idx" ON "rater_decisions" USING btree ("principle_key");--> statement-breakpoint
CREATE INDEX "rater_decisions_model_idx" ON "rater_decisions" USING btree ("rater_model");--> statement-breakpoint
CREATE INDEX "rater_decisions_created_idx" ON "rater_decisions" USING btree ("created_at");--> statement-breakpoint
CREATE INDEX "rater_decisions_pair_idx" ON "rater_decisions" USING btree ("completion_a_id","completion_b_id");--> statement-breakpoint
CREATE UNIQUE INDEX "runs_workflow_id_key" ON "runs" USING btree ("workflow_id");--> statement-breakpoint
CREATE INDEX "runs_status_idx" ON "runs" USING btree ("status");