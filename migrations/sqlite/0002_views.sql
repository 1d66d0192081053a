-- Analyst views, the same names and columns as migrations/sql/0002_views.sql (PostgreSQL).
-- Tombstones (deleted = 1) never count. Amounts are minor units (cents) in the production's
-- currency; budget, projection and payment rows in another currency are not summed into it.
--
-- SQLite has no materialized views: every view here is a plain view, computed when queried, so
-- it is always current (no refresh, no staleness; `sinks.sql.refresh_interval` is unused). The
-- cost is paid by the reader: fine at the embedded demo's scale, where the indexes on
-- production_id keep the joins cheap. Dates (launch_date, month) are 'YYYY-MM-DD' text.

-- Budget vs paid vs projected spend, one row per live production.
DROP VIEW IF EXISTS budget_vs_actuals;
CREATE VIEW budget_vs_actuals AS
SELECT p.id                                                        AS production_id,
       p.title,
       p.status,
       p.currency,
       b.budget,
       COALESCE(pay.paid, 0)                                       AS paid,
       COALESCE(pay.pending, 0)                                    AS pending,
       cf.projected,
       s.launch_date,
       b.budget - COALESCE(pay.paid, 0) - COALESCE(pay.pending, 0) AS remaining
FROM production p
LEFT JOIN (SELECT production_id, currency, sum(total) AS budget
           FROM budget WHERE NOT deleted GROUP BY production_id, currency) b
       ON b.production_id = p.id AND b.currency = p.currency
LEFT JOIN (SELECT production_id, currency, sum(total) AS projected
           FROM cash_flow WHERE NOT deleted GROUP BY production_id, currency) cf
       ON cf.production_id = p.id AND cf.currency = p.currency
LEFT JOIN (SELECT production_id, max(launch_date) AS launch_date
           FROM schedule WHERE NOT deleted GROUP BY production_id) s
       ON s.production_id = p.id
LEFT JOIN (SELECT production_id, currency,
                  sum(amount) FILTER (WHERE status = 'PAID')    AS paid,
                  sum(amount) FILTER (WHERE status = 'PENDING') AS pending
           FROM payment WHERE NOT deleted GROUP BY production_id, currency) pay
       ON pay.production_id = p.id AND pay.currency = p.currency
WHERE NOT p.deleted;

-- Productions trending over budget: committed spend (paid + pending) or the cash-flow projection
-- exceeds the budget.
DROP VIEW IF EXISTS over_budget_productions;
CREATE VIEW over_budget_productions AS
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

-- Cash-flow projection by month, per live projection, with the running total. A projection whose
-- production row has not arrived yet is shown (title NULL); one whose production is deleted is not.
DROP VIEW IF EXISTS cash_flow_by_month;
CREATE VIEW cash_flow_by_month AS
SELECT cf.production_id,
       p.title,
       cf.currency,
       m.month,
       m.amount,
       sum(m.amount) OVER (PARTITION BY cf.id ORDER BY m.month, m.ordinal) AS cumulative
FROM cash_flow cf
JOIN cash_flow_month m ON m.cash_flow_id = cf.id
LEFT JOIN production p ON p.id = cf.production_id
WHERE NOT cf.deleted
  AND p.deleted IS NOT TRUE;
