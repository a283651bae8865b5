CREATE TABLE "preference_drops" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"run_id" bigint NOT NULL,
	"iteration" integer DEFAULT 0 NOT NULL,
	"prompt_id" bigint NOT NULL,
	"completion_low_id" bigint NOT NULL,
	"completion_high_id" bigint NOT NULL,
	"reason" text NOT NULL,
	"soft_label" double precision NOT NULL,
	"orders_agree" boolean,
	"decision_ids" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"debias" jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "preference_drops_reason_known" CHECK ("preference_drops"."reason" in ('orders-disagree', 'below-margin')),
	CONSTRAINT "preference_drops_pair_ordered" CHECK ("preference_drops"."completion_low_id" < "preference_drops"."completion_high_id")
);
--> statement-breakpoint
ALTER TABLE "preferences" ADD COLUMN "debias" jsonb;--> statement-breakpoint
ALTER TABLE "preference_drops" ADD CONSTRAINT "preference_drops_run_id_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."runs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "preference_drops" ADD CONSTRAINT "preference_drops_prompt_id_prompts_id_fk" FOREIGN KEY ("prompt_id") REFERENCES "public"."prompts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "preference_drops" ADD CONSTRAINT "preference_drops_completion_low_id_completions_id_fk" FOREIGN KEY ("completion_low_id") REFERENCES "public"."completions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "preference_drops" ADD CONSTRAINT "preference_drops_completion_high_id_completions_id_fk" FOREIGN KEY ("completion_high_id") REFERENCES "public"."completions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "preference_drops_pair_key" ON "preference_drops" USING btree ("run_id","iteration","completion_low_id","completion_high_id");