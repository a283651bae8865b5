CREATE TABLE "step_checks" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"run_id" bigint NOT NULL,
	"iteration" integer NOT NULL,
	"completion_id" bigint NOT NULL,
	"step_index" integer NOT NULL,
	"step_count" integer NOT NULL,
	"checker" text NOT NULL,
	"step_text" text NOT NULL,
	"checks" jsonb NOT NULL,
	"score" double precision NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "step_checks" ADD CONSTRAINT "step_checks_run_id_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."runs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "step_checks" ADD CONSTRAINT "step_checks_completion_id_completions_id_fk" FOREIGN KEY ("completion_id") REFERENCES "public"."completions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "step_checks_step" ON "step_checks" USING btree ("completion_id","step_index","checker");--> statement-breakpoint
CREATE INDEX "step_checks_run_idx" ON "step_checks" USING btree ("run_id","iteration");