-- Analyst views. Tombstones (deleted = true) never count. Amounts are minor units (cents) in the
-- production's currency; budget, projection and payment rows in another currency are not summed
-- into it (they cannot be added without an exchange rate).

-- Budget vs paid vs projected spend, one row per live production. Materialized: it aggregates
-- every payment, the table that grows without bound, and dashboards read it often. The sink
-- refreshes it CONCURRENTLY (readers are never blocked; needs the unique index below) every
-- `sinks.sql.refresh_interval`, so it lags the tables by at most that interval plus one refresh.
CREATE MATERIALIZED VIEW IF NOT EXISTS budget_vs_actuals AS
SELECT p.id                                                    AS production_id,
       p.title,
       p.status,
       p.currency,
       b.budget,
       COALESCE(pay.paid, 0)                                   AS paid,
       COALESCE(pay.pending, 0)                                AS pending,
       cf.projected,
       s.launch_date,
       b.budget - COALESCE(pay.paid, 0) - COALESCE(pay.pending, 0) AS remaining
FROM production p
LEFT JOIN (SELECT production_id, currency, sum(total)::bigint AS budget
           FROM budget WHERE NOT deleted GROUP BY production_id, currency) b
       ON b.production_id = p.id AND b.currency = p.currency
LEFT JOIN (SELECT production_id, currency, sum(total)::bigint AS projected
           FROM cash_flow WHERE NOT deleted GROUP BY production_id, currency) cf
       ON cf.production_id = p.id AND cf.currency = p.currency
LEFT JOIN (SELECT production_id, max(launch_date) AS launch_date
           FROM schedule WHERE NOT deleted GROUP BY production_id) s
       ON s.production_id = p.id
LEFT JOIN (SELECT production_id, currency,
                  sum(amount) FILTER (WHERE status = 'PAID')::bigint    AS paid,
                  sum(amount) FILTER (WHERE status = 'PENDING')::bigint AS pending
           FROM payment WHERE NOT deleted GROUP BY production_id, currency) pay
       ON pay.production_id = p.id AND pay.currency = p.currency
WHERE NOT p.deleted;

CREATE UNIQUE INDEX IF NOT EXISTS budget_vs_actuals_production ON budget_vs_actuals (production_id);

-- Productions trending over budget: committed spend (paid + pending) or the cash-flow projection
-- exceeds the budget. A filter over budget_vs_actuals, so it has the same staleness.
CREATE OR REPLACE VIEW over_budget_productions AS
SELECT production_id,
       title,
       status,
       currency,
       budget,
       paid,
       pending,
       projected,
       paid + pending - budget AS committed_over_budget,
       projected - budget      AS projected_over_budget
FROM budget_vs_actuals
WHERE budget IS NOT NULL
  AND (paid + pending > budget OR projected > budget);

-- Cash-flow projection by month, per live projection, with the running total. A plain view: a
-- join on the (cash_flow_id, ordinal) primary key, cheap and always current. A projection whose
-- production row has not arrived yet is shown (title NULL); one whose production is deleted is not.
CREATE OR REPLACE VIEW cash_flow_by_month AS
SELECT cf.production_id,
       p.title,
       cf.currency,
       m.month,
       m.amount,
       (sum(m.amount) OVER (PARTITION BY cf.id ORDER BY m.month, m.ordinal))::bigint AS cumulative
FROM cash_flow cf
JOIN cash_flow_month m ON m.cash_flow_id = cf.id
LEFT JOIN production p ON p.id = cf.production_id
WHERE NOT cf.deleted
  AND p.deleted IS NOT TRUE;
