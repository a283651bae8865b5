CREATE TABLE "critiques" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"run_id" bigint NOT NULL,
	"source_completion_id" bigint NOT NULL,
	"round" integer NOT NULL,
	"constitution_id" bigint NOT NULL,
	"principle_id" bigint NOT NULL,
	"principle_key" text NOT NULL,
	"critique_request" text NOT NULL,
	"revision_request" text NOT NULL,
	"critique" text NOT NULL,
	"revision_completion_id" bigint NOT NULL,
	"flags" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "request_cache" (
	"key" text PRIMARY KEY NOT NULL,
	"endpoint" text NOT NULL,
	"model" text NOT NULL,
	"response" jsonb NOT NULL,
	"latency_ms" integer NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "rater_decisions" ADD COLUMN "outcome" text DEFAULT 'ok' NOT NULL;--> statement-breakpoint
ALTER TABLE "rater_decisions" ADD COLUMN "attempt" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "rater_decisions" ADD COLUMN "flags" jsonb DEFAULT '[]'::jsonb NOT NULL;--> statement-breakpoint
ALTER TABLE "rater_decisions" ADD COLUMN "cache_key" text;--> statement-breakpoint
ALTER TABLE "critiques" ADD CONSTRAINT "critiques_run_id_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."runs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "critiques" ADD CONSTRAINT "critiques_source_completion_id_completions_id_fk" FOREIGN KEY ("source_completion_id") REFERENCES "public"."completions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "critiques" ADD CONSTRAINT "critiques_constitution_id_constitutions_id_fk" FOREIGN KEY ("constitution_id") REFERENCES "public"."constitutions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "critiques" ADD CONSTRAINT "critiques_principle_id_principles_id_fk" FOREIGN KEY ("principle_id") REFERENCES "public"."principles"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "critiques" ADD CONSTRAINT "critiques_revision_completion_id_completions_id_fk" FOREIGN KEY ("revision_completion_id") REFERENCES "public"."completions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "critiques_chain_round" ON "critiques" USING btree ("run_id","source_completion_id","round");--> statement-breakpoint
ALTER TABLE "rater_decisions" ADD CONSTRAINT "rater_decisions_outcome_known" CHECK ("rater_decisions"."outcome" in ('ok', 'unparseable'));