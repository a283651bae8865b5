-- Views for auditing in psql (see README, "Auditing in SQL"). The AI's rows are never updated;
-- human reviews sit beside them and win where they exist.

-- The newest human review of each pair (in either order).
CREATE VIEW latest_human_reviews AS
SELECT DISTINCT ON (h.run_id, least(h.completion_a_id, h.completion_b_id), greatest(h.completion_a_id, h.completion_b_id))
  h.*
FROM human_reviews h
ORDER BY h.run_id, least(h.completion_a_id, h.completion_b_id), greatest(h.completion_a_id, h.completion_b_id), h.created_at DESC, h.id DESC;
--> statement-breakpoint

-- Every rater decision with the texts it judged and its override, if any.
CREATE VIEW audit_decisions AS
SELECT
  d.id, d.run_id, d.stage, d.iteration, d.created_at,
  d.principle_key, d.principle_text, d.constitution_hash,
  d.rater_endpoint, d.rater_model, d."order", d.attempt, d.outcome, d.parsed_choice,
  (d.probabilities ->> 'A')::float8 AS p_a,
  (d.probabilities ->> 'B')::float8 AS p_b,
  greatest((d.probabilities ->> 'A')::float8, (d.probabilities ->> 'B')::float8) AS confidence,
  d.flags, d.from_cache, d.latency_ms, d.prompt_tokens, d.completion_tokens,
  p.messages AS prompt,
  ca.id AS completion_a_id, ca.text AS completion_a,
  cb.id AS completion_b_id, cb.text AS completion_b,
  h.prefer AS human_prefer_a_b, h.reason AS human_reason, h.reviewer AS human_reviewer,
  h.completion_a_id AS human_completion_a_id
FROM rater_decisions d
JOIN prompts p ON p.id = d.prompt_id
JOIN completions ca ON ca.id = d.completion_a_id
LEFT JOIN completions cb ON cb.id = d.completion_b_id
LEFT JOIN latest_human_reviews h
  ON h.run_id = d.run_id
 AND least(h.completion_a_id, h.completion_b_id) = least(d.completion_a_id, d.completion_b_id)
 AND greatest(h.completion_a_id, h.completion_b_id) = greatest(d.completion_a_id, d.completion_b_id);
--> statement-breakpoint

-- The preferences training reads: the AI's, unless a human reviewed the pair; a human "tie" drops it.
CREATE VIEW effective_preferences AS
SELECT p.run_id, p.iteration, p.prompt_id, p.chosen_id, p.rejected_id, p.soft_label, p.orders_agree,
       'ai'::text AS source, p.decision_ids, NULL::bigint AS review_id
FROM preferences p
WHERE p.source = 'ai'
  AND NOT EXISTS (
    SELECT 1 FROM latest_human_reviews h
    WHERE h.run_id = p.run_id
      AND least(h.completion_a_id, h.completion_b_id) = p.completion_low_id
      AND greatest(h.completion_a_id, h.completion_b_id) = p.completion_high_id)
UNION ALL
SELECT h.run_id, coalesce(ai.iteration, 0), h.prompt_id,
       CASE h.prefer WHEN 'A' THEN h.completion_a_id ELSE h.completion_b_id END,
       CASE h.prefer WHEN 'A' THEN h.completion_b_id ELSE h.completion_a_id END,
       1.0::float8, NULL::boolean, 'human'::text, coalesce(ai.decision_ids, '[]'::jsonb), h.id
FROM latest_human_reviews h
LEFT JOIN preferences ai
  ON ai.run_id = h.run_id AND ai.source = 'ai'
 AND ai.completion_low_id = least(h.completion_a_id, h.completion_b_id)
 AND ai.completion_high_id = greatest(h.completion_a_id, h.completion_b_id)
WHERE h.prefer <> 'tie';
--> statement-breakpoint

-- Per run and principle: label distribution, order agreement (position bias), confidence, tokens.
CREATE VIEW principle_stats AS
WITH pairs AS (
  SELECT run_id, iteration, principle_key,
         least(completion_a_id, completion_b_id) AS low, greatest(completion_a_id, completion_b_id) AS high,
         bool_or("order" = 'AB' AND outcome = 'ok') AND bool_or("order" = 'BA' AND outcome = 'ok') AS both_orders,
         count(DISTINCT ((probabilities ->> 'first')::float8 >= 0.5)) FILTER (WHERE outcome = 'ok') = 1 AS agree
  FROM rater_decisions
  WHERE stage = 'label'
  GROUP BY run_id, iteration, principle_key, low, high
)
SELECT d.run_id, d.principle_key,
       count(*) AS decisions,
       count(*) FILTER (WHERE d.parsed_choice = 'A') AS chose_a,
       count(*) FILTER (WHERE d.parsed_choice = 'B') AS chose_b,
       count(*) FILTER (WHERE d.outcome = 'unparseable') AS unparseable,
       avg(greatest((d.probabilities ->> 'A')::float8, (d.probabilities ->> 'B')::float8)) FILTER (WHERE d.outcome = 'ok') AS mean_confidence,
       (SELECT avg(CASE WHEN pr.agree THEN 1.0 ELSE 0.0 END) FROM pairs pr
         WHERE pr.run_id = d.run_id AND pr.principle_key = d.principle_key AND pr.both_orders) AS order_agreement,
       sum(coalesce(d.prompt_tokens, 0)) FILTER (WHERE NOT d.from_cache) AS prompt_tokens,
       sum(coalesce(d.completion_tokens, 0)) FILTER (WHERE NOT d.from_cache) AS completion_tokens,
       count(*) FILTER (WHERE d.from_cache) AS from_cache,
       count(*) FILTER (WHERE jsonb_array_length(d.flags) > 0) AS flagged
FROM rater_decisions d
WHERE d.stage = 'label'
GROUP BY d.run_id, d.principle_key;
