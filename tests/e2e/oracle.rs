//! The randomized oracle: for every query of a corpus, a stream table in
//! AUTO mode, then rounds of generated DML (inserts with NULLs and
//! duplicates, updates of plain, grouping and key columns, deletes of whole
//! groups and of current extremes, TRUNCATE, rolled-back and multi-statement
//! transactions), each followed by a refresh; after every refresh every
//! stream table must equal a fresh run of its query as a multiset. Queries
//! pg_trickle maintains differentially must actually be refreshed that way.
//!
//! Seeded and reproducible: PGT_ORACLE_SEEDS=1,2,3 and PGT_ORACLE_ROUNDS=n
//! override the defaults; a failure names its seed, round and query.

use postgres::Client;

use crate::{differences_sql, fresh_db, Rng};

/// (query, maintained differentially?)
const CORPUS: &[(&str, bool)] = &[
    // Filters and projections whose select list lacks a table's primary key
    // (or over a table without one): multisets, from the rows the changes
    // add and remove (an inner join's terms, or slices).
    ("SELECT t1.k, t2.k AS k2 FROM t1 JOIN t2 ON t1.k = t2.k", true),
    ("SELECT t1.g, t3.b FROM t1 JOIN t2 ON t2.k = t1.k JOIN t3 ON t3.a = t2.id", true),
    ("SELECT t1.v, t2.note FROM t1 JOIN t2 ON t1.k = t2.k WHERE t1.v > 20 OR t2.note IS NULL", true),
    ("SELECT a.k, b.v FROM t1 a JOIN t1 b ON a.k = b.k AND a.id < b.id", true),
    ("SELECT t3.a, t3.b, t2.note FROM t3 JOIN t2 ON t2.k = t3.b", true),
    ("SELECT k, v FROM t1 WHERE EXISTS (SELECT 1 FROM t2 WHERE t2.k = t1.k AND t2.note IS NOT NULL)", true),
    ("SELECT t2.k, t2.note FROM t2 WHERE t2.k > (SELECT count(*) FROM t1 WHERE t1.k = t2.id)", true),
    ("SELECT g, coalesce(t2.note, '-') AS note FROM t1 LEFT JOIN t2 ON t2.id = t1.k", true),
    // Filters and projections keyed by the primary key.
    ("SELECT id, k, g, v FROM t1", true),
    ("SELECT id, v FROM t1 WHERE v > 50", true),
    ("SELECT id, v FROM t1 WHERE v IS NULL OR k = 3", true),
    ("SELECT id, coalesce(g, '?') AS g, v * 2 AS v2 FROM t1", true),
    ("SELECT id, CASE WHEN v > 50 THEN 'hi' WHEN v > 10 THEN 'mid' ELSE 'lo' END AS band FROM t1", true),
    ("SELECT id, v::numeric / 3 AS third, w::text AS wt FROM t1 WHERE flag", true),
    ("SELECT upper(g) AS ug, id, length(g) AS len FROM t1 WHERE g LIKE 'g%'", true),
    ("SELECT id, k FROM t1 WHERE k BETWEEN 2 AND 4 AND v % 2 = 0", true),
    ("SELECT id AS ident, greatest(v, k) AS m FROM t1", true),
    ("SELECT id, note FROM t2 WHERE note IS NOT NULL", true),
    ("SELECT id, k, g, v, w, flag FROM t1 WHERE NOT flag", true),
    // Grouped aggregates keyed by the GROUP BY columns.
    ("SELECT k, count(*) AS n FROM t1 GROUP BY k", true),
    ("SELECT k, min(g) AS mg, max(w) AS mw, min(v) AS lo, count(*) AS n FROM t1 WHERE flag IS NOT FALSE GROUP BY k", true),
    ("SELECT k, count(g) AS ng, count(flag) AS nf, sum(w) AS sw, avg(k) AS ak FROM t1 WHERE v IS DISTINCT FROM 3 GROUP BY k", true),
    ("SELECT k, sum(v) AS s, avg(v) AS a, count(v) AS c FROM t1 GROUP BY k", true),
    ("SELECT g, min(v) AS lo, max(v) AS hi FROM t1 GROUP BY g", true),
    ("SELECT k, g, count(*) AS n, sum(w) AS sw FROM t1 GROUP BY k, g", true),
    ("SELECT k, string_agg(g, ',' ORDER BY g, id) AS gs FROM t1 GROUP BY k", true),
    ("SELECT k, array_agg(v ORDER BY v, id) AS vs, bool_and(flag) AS all_flag FROM t1 GROUP BY k", true),
    ("SELECT k, count(*) FILTER (WHERE flag) AS nf, sum(v) FILTER (WHERE v > 20) AS sv FROM t1 GROUP BY k", true),
    ("SELECT k, count(*) AS n FROM t1 GROUP BY k HAVING count(*) > 2", true),
    ("SELECT g, max(v) - min(v) AS spread FROM t1 WHERE v IS NOT NULL GROUP BY g HAVING max(v) > 10", true),
    ("SELECT k, percentile_cont(0.5) WITHIN GROUP (ORDER BY v) AS med FROM t1 GROUP BY k", true),
    ("SELECT flag, count(DISTINCT k) AS dk FROM t1 GROUP BY flag", true),
    ("SELECT k, sum(v) AS s FROM t1 WHERE g IS NOT NULL GROUP BY k", true),
    ("SELECT a, count(*) AS n, sum(b) AS s FROM t3 GROUP BY a", true),
    ("SELECT k, count(*) AS n FROM t2 GROUP BY k", true),
    ("SELECT g, k, avg(w) AS aw FROM t1 GROUP BY g, k HAVING avg(w) IS NOT NULL", true),
    // Running totals in the stream table's own columns: count(*) beside
    // sums of NOT NULL columns (id) or of columns whose count is an output.
    ("SELECT k, count(*) AS n, count(v) AS c, sum(v) AS s, avg(v) AS a, count(w) AS cw, sum(w) AS sw FROM t1 GROUP BY k", true),
    ("SELECT g, count(*) AS n, sum(id) AS s, avg(id) AS a FROM t1 WHERE v > 10 GROUP BY g", true),
    ("SELECT t2.note, count(*) AS n, sum(t1.id) AS s, count(t1.v) AS c, sum(t1.v) AS sv FROM t1 JOIN t2 ON t1.k = t2.k GROUP BY t2.note", true),
    ("SELECT t1.k, count(*) AS n, sum(t1.id) AS s FROM t1 WHERE EXISTS (SELECT 1 FROM t2 WHERE t2.k = t1.k) GROUP BY t1.k", true),
    // Running totals of expressions.
    ("SELECT k, sum(v * 2 + k) AS s, count(v + 1) AS c, max(coalesce(g, 'none')) AS mg, min(abs(v - 50)) AS md FROM t1 GROUP BY k", true),
    ("SELECT sum(CASE WHEN flag THEN v ELSE 0 END) AS sv, avg(v * 3) AS av, count(*) AS n FROM t1 WHERE k IS NOT NULL", true),
    // Values of varying scale (w is an unconstrained numeric): recomputed,
    // since a running sum would keep the scale of deleted values.
    ("SELECT k, avg(v::numeric / 2) AS av, sum(w) AS sw, avg(w) AS aw FROM t1 GROUP BY k", true),
    // A sum of an unconstrained numeric is kept from running totals (equal
    // numbers, possibly with more trailing zeros than a fresh run).
    ("SELECT g, sum(w) AS sw, count(w) AS cw, sum(v::numeric / 4) AS sq FROM t1 GROUP BY g", true),
    ("SELECT b, sum(a * b) AS ab, max(a + b) AS mx FROM t3 GROUP BY b", true),
    // Aggregates without GROUP BY: one row, kept from running totals over
    // one table, recomputed otherwise.
    ("SELECT count(*) AS n, sum(v) AS s FROM t1", true),
    ("SELECT max(v) AS mx, min(w) AS mn FROM t1", true),
    ("SELECT count(*) FROM t3", true),
    ("SELECT avg(w) AS aw, count(flag) AS nf, max(g) AS mg FROM t1 WHERE flag IS NOT TRUE", true),
    ("SELECT count(*) AS n, string_agg(g, ',' ORDER BY g, id) AS gs FROM t1 WHERE v > 10", true),
    ("SELECT sum(v) AS s, count(*) AS n FROM t1 HAVING count(*) > 3", true),
    ("SELECT count(*) AS n, sum(t1.v) AS s FROM t1 JOIN t2 ON t1.k = t2.k", true),
    ("SELECT count(*) AS n, max(t2.note) AS mx FROM t1 LEFT JOIN t2 ON t2.k = t1.k", true),
    // Subqueries in FROM and WITH queries that filter, project and join:
    // read as their tables joined in their place.
    ("WITH big AS (SELECT * FROM t1 WHERE v > 40) SELECT k, count(*) FROM big GROUP BY k", true),
    ("SELECT s.id, s.v2 FROM (SELECT id, v * 2 AS v2, k FROM t1 WHERE v > 10) s WHERE s.k <> 2", true),
    ("WITH a AS (SELECT id, k FROM t1), b AS (SELECT id AS bid, k, note FROM t2) SELECT a.id, b.bid, b.note FROM a JOIN b ON a.k = b.k", true),
    ("WITH a AS MATERIALIZED (SELECT id, k, v FROM t1 WHERE flag) SELECT id, v FROM a WHERE k > 1", true),
    ("SELECT x.id, y.id AS id2 FROM (SELECT id, k FROM t1) x JOIN (SELECT id, k FROM t1 WHERE v > 20) y ON x.k = y.k AND x.id < y.id", true),
    ("SELECT j.note, count(*) AS n, sum(j.v) AS s FROM (SELECT t1.v, t2.note FROM t1 JOIN t2 ON t1.k = t2.k) j GROUP BY j.note", true),
    ("WITH c AS (SELECT k, v FROM t1 WHERE v IS NOT NULL) SELECT count(*) AS n, max(v) AS mx FROM c", true),
    ("SELECT DISTINCT s.k FROM (SELECT k FROM t1 WHERE v > 30) s", true),
    ("SELECT t1.k, count(s.id) AS n FROM t1 LEFT JOIN (SELECT id, k FROM t2 WHERE note IS NOT NULL) s ON s.k = t1.k GROUP BY t1.k", true),
    ("SELECT t.id, t.k FROM (SELECT id, k FROM t1 ORDER BY id LIMIT 5) t", false),
    ("SELECT id, v FROM (SELECT id, v, row_number() OVER (ORDER BY id) AS r FROM t1) s WHERE r > 2", false),
    ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT t1.id, r.n FROM t1, r", false),
    // Aggregates of aggregates: FULL, over inner stream tables that keep
    // the aggregating WITH queries (dvm::nested).
    ("WITH s AS (SELECT k, sum(v) AS total FROM t1 GROUP BY k) SELECT t2.id, s.total FROM t2 JOIN s ON s.k = t2.k WHERE s.total = (SELECT max(total) FROM s)", false),
    ("WITH c AS (SELECT k, count(*) AS n FROM t1 WHERE v IS NOT NULL GROUP BY k) SELECT n, count(*) AS groups FROM c GROUP BY n", true),
    ("SELECT s.total, count(*) AS n FROM (SELECT k, sum(v) AS total FROM t1 WHERE flag GROUP BY k) s GROUP BY s.total", true),
    ("WITH a AS (SELECT g, avg(v) AS m FROM t1 GROUP BY g), b AS (SELECT k, min(v) AS lo, string_agg(g, ',' ORDER BY g) AS gs FROM t1 GROUP BY k) SELECT (SELECT max(m) FROM a) AS top, (SELECT count(*) FROM b WHERE lo > 10) AS n, (SELECT max(gs) FROM b) AS gs", false),
    // Aggregating scalar subqueries of FULL queries (a window function),
    // looked up in inner stream tables: correlated (a missing group is
    // NULL, as the aggregate over no rows), with conditions of their own,
    // uncorrelated; a correlated count stays in the query.
    ("SELECT id, rank() OVER (ORDER BY v, id) AS r FROM t1 o WHERE v > (SELECT avg(v) FROM t1 i WHERE i.k = o.k)", false),
    ("SELECT t2.id, row_number() OVER (ORDER BY t2.id) AS r FROM t2 WHERE t2.k < (SELECT max(t1.v) - 5 FROM t1 WHERE t1.k = t2.id AND t1.flag)", false),
    ("SELECT id, g, sum(v) OVER (PARTITION BY g) AS s FROM t1 WHERE w > (SELECT avg(w) FROM t1 WHERE v IS NOT NULL) AND (SELECT count(*) FROM t2 WHERE t2.k = t1.k) < 3", false),
    ("SELECT t2.id, (SELECT string_agg(g, ',' ORDER BY g) FROM t1 WHERE t1.k = t2.k AND t1.v > 10) AS gs, count(*) OVER () AS n FROM t2", false),
    ("SELECT t1.id, s.id AS id2 FROM t1 LEFT JOIN (SELECT id, k FROM t2 WHERE note IS NOT NULL) s ON s.k = t1.k",true),
    ("SELECT s.k, count(*) AS n FROM t1 LEFT JOIN (SELECT k, id FROM t2) s ON s.k = t1.k GROUP BY s.k", true),
    // Filters and projections of one table without a key in the select
    // list: a multiset, from the changed rows alone.
    ("SELECT v FROM t1", true),
    ("SELECT a, b FROM t3", true),
    ("SELECT a FROM t3 WHERE b > 2", true),
    ("SELECT a * 2 AS a2, coalesce(b, -1) AS b FROM t3 WHERE a IS DISTINCT FROM b", true),
    ("SELECT k, upper(g) AS ug, v > 50 AS big FROM t1 WHERE flag IS NOT FALSE", true),
    // UNION ALL of keyed branches: a multiset, rows found through each
    // branch's key.
    ("SELECT id, v FROM t1 UNION ALL SELECT id, k FROM t2", true),
    ("SELECT id, v FROM t1 WHERE v > 30 UNION ALL SELECT id, v FROM t1 WHERE k = 2", true),
    ("SELECT k, count(*) AS n FROM t1 GROUP BY k UNION ALL SELECT k, count(*) FROM t2 GROUP BY k", true),
    ("SELECT DISTINCT k FROM t1 UNION ALL SELECT DISTINCT a FROM t3", true),
    ("SELECT t1.id, t2.id AS id2 FROM t1 JOIN t2 ON t1.k = t2.k UNION ALL SELECT id, id FROM t2 WHERE note IS NULL", true),
    ("SELECT id, g AS label FROM t1 UNION ALL SELECT id, note FROM t2 UNION ALL SELECT id, 'const' FROM t1 WHERE flag", true),
    // UNION ALL of branches without keys: each branch's signed rows.
    ("SELECT v FROM t1 UNION ALL SELECT k FROM t2", true),
    ("SELECT t1.k, t2.note FROM t1 JOIN t2 ON t1.k = t2.k UNION ALL SELECT k, g FROM t1 WHERE flag", true),
    ("SELECT a, b FROM t3 UNION ALL SELECT b, a FROM t3 WHERE a > 2 UNION ALL SELECT k, v FROM t1", true),
    ("SELECT id FROM t1 UNION ALL SELECT count(*) FROM t2", false),
    // DISTINCT.
    ("SELECT DISTINCT k FROM t1", true),
    ("SELECT DISTINCT k, g FROM t1", true),
    ("SELECT DISTINCT a, b FROM t3", true),
    ("SELECT DISTINCT flag FROM t1 WHERE v > 30", true),
    // Grouped by expressions over one table: count/sum/avg kept from
    // running totals of the table read as a join of one (by the values of
    // the expressions); other aggregates in full.
    ("SELECT k * 2 AS k2, count(*) FROM t1 GROUP BY k * 2", true),
    ("SELECT k % 3 AS m, count(*) AS n, sum(v) AS s, avg(v) AS a, sum(w) AS sw FROM t1 WHERE flag GROUP BY k % 3", true),
    ("SELECT lower(g) AS lg, k, count(*) AS n, count(v) AS c, sum(v) AS s FROM t1 GROUP BY lower(g), k", true),
    ("SELECT coalesce(k, -1) AS ck, count(v) AS c, sum(v) + 1 AS s1 FROM t1 WHERE v IS NOT NULL OR k > 2 GROUP BY coalesce(k, -1)", true),
    // Without aggregates: the groups alone, and SELECT DISTINCT of
    // expressions (a GROUP BY of every output), kept the same way.
    ("SELECT k % 3 AS m, g FROM t1 GROUP BY k % 3, g", true),
    ("SELECT DISTINCT lower(g) AS lg FROM t1", true),
    ("SELECT DISTINCT k * 2 AS k2, v IS NULL AS nv FROM t1 WHERE flag", true),
    ("SELECT DISTINCT coalesce(a, b) AS c, b FROM t3", true),
    // Over joins, grouped by columns of several tables (or expressions):
    // a count per group of the join's rows, from its change terms.
    ("SELECT DISTINCT t1.g, t2.note FROM t1 JOIN t2 ON t2.k = t1.k", true),
    ("SELECT t1.k % 2 AS parity, t3.b FROM t1 JOIN t3 ON t3.a = t1.k GROUP BY t1.k % 2, t3.b", true),
    ("SELECT DISTINCT lower(t1.g) AS lg, t2.note IS NULL AS nn FROM t1 JOIN t2 ON t2.id = t1.k", true),
    // min/max by expressions: kept too, a deleted extreme read again from
    // the rows whose expressions have the group's values.
    ("SELECT k * 2 AS k2, max(v) AS mx FROM t1 GROUP BY k * 2", true),
    ("SELECT lower(g) AS lg, min(v) AS lo, max(w) AS hi, count(*) AS n FROM t1 GROUP BY lower(g)", true),
    ("SELECT k % 3 AS m, max(v) - min(v) AS spread FROM t1 WHERE v IS NOT NULL GROUP BY k % 3 HAVING min(v) < 50", true),
    // Grouped by expressions with other aggregates: the groups the changed
    // rows' expressions name recomputed.
    ("SELECT k % 3 AS m, string_agg(g, ',' ORDER BY g, id) AS gs, bool_and(flag) AS af FROM t1 GROUP BY k % 3", true),
    ("SELECT lower(g) AS lg, k, percentile_cont(0.5) WITHIN GROUP (ORDER BY v) AS med FROM t1 WHERE v IS NOT NULL GROUP BY lower(g), k HAVING count(*) > 1", true),
    // The same over joins, by expressions over one table reference and
    // its columns: regrouped by that reference, changes of the others
    // followed along the = conditions (an inner join, a LEFT JOIN).
    ("SELECT t1.k % 3 AS m, t1.g, string_agg(t2.note, ',' ORDER BY t2.note, t2.id) AS notes FROM t1 JOIN t2 ON t2.k = t1.k GROUP BY 1, t1.g", true),
    ("SELECT lower(t1.g) AS lg, count(t2.id) AS n, bool_or(t2.note IS NULL) AS anynull FROM t1 LEFT JOIN t2 ON t2.k = t1.k GROUP BY 1", true),
    // HAVING over aggregates the totals keep: a group has a row while its
    // totals pass it (over one table, by expressions, over joins).
    ("SELECT k * 2 AS k2, count(*) AS n FROM t1 GROUP BY k * 2 HAVING count(*) > 1", true),
    ("SELECT k, sum(v) AS s FROM t1 GROUP BY k HAVING sum(v) > 40 AND count(*) >= 2", true),
    ("SELECT g, count(*) AS n FROM t1 GROUP BY g HAVING avg(v) > 30 OR count(v) = 0", true),
    ("SELECT k, count(*) AS n, min(v) AS lo FROM t1 GROUP BY k HAVING max(v) - min(v) > 20", true),
    ("SELECT t2.note, count(*) AS n, sum(t1.v) AS s FROM t1 JOIN t2 ON t2.k = t1.k GROUP BY t2.note HAVING sum(t1.v) > 50", true),
    ("SELECT lower(g) AS lg, sum(w) AS sw FROM t1 WHERE flag GROUP BY lower(g) HAVING count(*) BETWEEN 2 AND 6", true),
    // Not maintained differentially yet: AUTO refreshes them in FULL.
    ("SELECT id, v FROM t1 TABLESAMPLE SYSTEM (100) REPEATABLE (1)", false),
    ("SELECT t1.id, t1.v, t2.note FROM t1 JOIN t2 ON t1.id = t2.id",true),
    // Tables joined by their primary key: identified by the rows they are
    // joined to (a chain, a self-join, the key selected or not, FROM
    // subqueries).
    ("SELECT t1.id, t1.v, t2.note FROM t1 JOIN t2 ON t2.id = t1.k", true),
    ("SELECT t1.id, t2.id AS id2, t2.note, t1.g FROM t1 JOIN t2 ON t2.id = t1.k WHERE t1.v > 20 AND t2.note IS NOT NULL", true),
    ("SELECT a.id, b.v AS bv, c.note FROM t1 a JOIN t1 b ON b.id = a.k JOIN t2 c ON c.id = b.k", true),
    ("SELECT t2.id, t2.note, t1.v FROM t2 JOIN t1 ON t1.id = t2.k", true),
    ("SELECT x.id, y.note FROM (SELECT id, k FROM t1 WHERE flag) x JOIN (SELECT id, note FROM t2) y ON y.id = x.k", true),
    // Inner joins keyed by the primary key of every joined table.
    ("SELECT t1.id, t2.id AS id2, t1.v, t2.note FROM t1 JOIN t2 ON t1.k = t2.k", true),
    ("SELECT t1.id, t2.id AS id2 FROM t1, t2 WHERE t1.k = t2.k AND t1.v > t2.id", true),
    ("SELECT a.id, b.id AS id2, a.v + b.v AS vv FROM t1 a JOIN t1 b ON a.k = b.k AND a.id < b.id", true),
    ("SELECT t1.id, t2.id AS id2, x.id AS id3 FROM t1 JOIN t2 ON t1.k = t2.k JOIN t1 x ON x.g = t1.g AND x.id <> t1.id WHERE t1.v > 40", true),
    ("SELECT t1.id, t2.id AS id2 FROM t1 CROSS JOIN t2 WHERE t2.note IS NOT NULL AND t1.flag", true),
    ("SELECT id, t2.id AS id2, coalesce(note, g) AS label FROM t1 JOIN t2 USING (id)", true),
    ("SELECT t1.id, t2.note FROM t1 LEFT JOIN t2 ON t1.k = t2.k",true),
    // One LEFT/RIGHT JOIN of two tables, both primary keys selected.
    ("SELECT t1.id, t2.id AS id2, t2.note, t1.v FROM t1 LEFT JOIN t2 ON t1.k = t2.k", true),
    ("SELECT t2.id AS id2, t1.id, t1.g FROM t1 RIGHT JOIN t2 ON t2.k = t1.k AND t1.v > 20", true),
    ("SELECT a.id, b.id AS id2 FROM t1 a LEFT JOIN t1 b ON b.k = a.k AND b.id <> a.id WHERE a.flag", true),
    // Chains of LEFT JOINs adding one table at a time, every primary key
    // selected: recomputed per row of the first table.
    ("SELECT t1.id, t2.id AS id2, b.id AS id3, t2.note, b.v FROM t1 LEFT JOIN t2 ON t2.k = t1.k LEFT JOIN t1 b ON b.id = t2.id", true),
    ("SELECT a.id, t2.id AS id2, c.id AS id3, coalesce(c.note, t2.note) AS note FROM t1 a LEFT JOIN t2 ON t2.k = a.k AND t2.note IS NOT NULL LEFT JOIN t2 c ON c.id = a.v AND c.k IS NOT DISTINCT FROM t2.k WHERE a.flag", true),
    ("SELECT t2.id, a.id AS id2, b.id AS id3, d.id AS id4 FROM t2 LEFT JOIN t1 a ON a.k = t2.id LEFT JOIN t1 b ON b.k = a.id LEFT JOIN t2 d ON d.k = b.v", true),
    // LEFT JOINs after an inner join: recomputed per row of its first
    // table with a one-column key (WHERE may read the inner join's tables).
    ("SELECT t1.id, t2.id AS id2, b.id AS id3 FROM t1 JOIN t2 ON t2.id = t1.k LEFT JOIN t1 b ON b.k = t2.k AND b.id <> t1.id WHERE t2.note IS NOT NULL", true),
    ("SELECT a.id, b.id AS id2, t2.id AS id3, t2.note FROM t1 a JOIN t1 b ON b.k = a.k AND b.id < a.id LEFT JOIN t2 ON t2.id = b.v", true),
    ("SELECT t2.id AS id2, t1.id, x.id AS id3 FROM t2 JOIN t1 ON t1.k = t2.id LEFT JOIN t2 x ON x.k = t1.v", true),
    // Inner joins after LEFT JOINs: one whose condition reads only the
    // start (it joins the start); one whose condition rejects the
    // NULL-extended rows (the LEFT JOIN is an inner join); a WHERE
    // condition doing that through two LEFT JOINs (b, then t2 by b's ON),
    // leaving x a LEFT JOIN; a WHERE condition rejecting NULL-extended rows.
    ("SELECT t1.id, t2.id AS id2, b.id AS id3, b.v FROM t1 LEFT JOIN t2 ON t2.k = t1.k JOIN t1 b ON b.id = t1.v", true),
    ("SELECT t1.id, t2.id AS id2, b.id AS id3, t2.note FROM t1 LEFT JOIN t2 ON t2.k = t1.k JOIN t1 b ON b.k = t2.id AND b.flag", true),
    ("SELECT a.id, t2.id AS id2, x.id AS id3, b.id AS id4 FROM t1 a LEFT JOIN t2 ON t2.k = a.k LEFT JOIN t2 x ON x.k = a.v LEFT JOIN t1 b ON b.id = t2.id WHERE b.flag", true),
    ("SELECT t1.id, t2.id AS id2, t2.note FROM t1 LEFT JOIN t2 ON t2.k = t1.k WHERE t2.note <> 'x' OR t2.note > t1.g", true),
    // (An inner join after a LEFT JOIN, whose condition may pass a
    // NULL-extended row: recomputed in full.)
    ("SELECT t1.id, t2.id AS id2, b.id AS id3 FROM t1 LEFT JOIN t2 ON t2.k = t1.k JOIN t1 b ON b.id = coalesce(t2.id, t1.id)", false),
    // A WHERE condition on the nullable side that a NULL-extended row may
    // pass: the nullable tables' changes followed to the preserved rows
    // along their ON clauses' = conditions (through a chain, after an
    // inner join, or a RIGHT JOIN).
    ("SELECT t1.id, t2.id AS id2, b.id AS id3 FROM t1 LEFT JOIN t2 ON t2.k = t1.k LEFT JOIN t1 b ON b.id = t2.id WHERE b.v IS NULL", true),
    ("SELECT a.id, x.id AS xid, t2.id AS id2, t2.note FROM t1 a JOIN t2 x ON x.id = a.k LEFT JOIN t2 ON t2.k = x.k AND t2.id <> x.id WHERE coalesce(t2.note, 'none') <> 'x'", true),
    ("SELECT t2.id, t1.id AS id2, t1.v FROM t1 RIGHT JOIN t2 ON t1.k = t2.k WHERE t1.v IS NULL OR t1.v > 20", true),
    ("SELECT t1.k, count(t2.id) FROM t1 FULL JOIN t2 ON t1.k = t2.k GROUP BY t1.k", false),
    ("SELECT t1.id, t2.id AS id2 FROM t1 LEFT JOIN t2 ON t2.k = t1.k WHERE t2.note IS NULL",true),
    // One FULL JOIN of two tables, both primary keys selected.
    ("SELECT t1.id, t2.id AS id2, t1.v, t2.note FROM t1 FULL JOIN t2 ON t1.k = t2.k", true),
    ("SELECT a.id, b.id AS id2 FROM t1 a FULL JOIN t1 b ON a.k = b.k AND a.id < b.id AND b.v > 10", true),
    ("SELECT t1.id, t2.id AS id2, coalesce(t1.g, t2.note) AS label FROM t1 FULL JOIN t2 USING (id)", true),
    // (With a WHERE clause: each side's changes followed to the other's
    // rows along the ON clause's =.)
    ("SELECT t1.id, t2.id AS id2 FROM t1 FULL JOIN t2 ON t1.k = t2.k WHERE t1.v IS NULL OR t1.v > 20", true),
    ("SELECT a.id, b.id AS id2 FROM t1 a FULL JOIN t1 b ON a.k = b.k AND a.id < b.id WHERE a.id IS NULL OR b.v > 10", true),
    ("SELECT x.id, y.id AS id2 FROM t1 x CROSS JOIN t2 y WHERE x.k = y.k AND x.v > y.k", true),
    ("SELECT k FROM t1 UNION SELECT k FROM t2", false),
    ("SELECT s.k, s.n FROM (SELECT k, count(*) AS n FROM t1 GROUP BY k) s WHERE s.n > 1", true),
    // Grouped subqueries in FROM and WITH queries by a NOT NULL column
    // (kk, generated from k): slices rooted at t1 by it.
    ("SELECT s.kk, s.n, s.sv FROM (SELECT kk, count(*) AS n, sum(v) AS sv FROM t1 GROUP BY kk) s WHERE s.n > 5", true),
    ("WITH c AS (SELECT kk, k, count(*) AS n FROM t1 GROUP BY kk, k) SELECT kk, count(*) AS ks, sum(n) AS rows FROM c GROUP BY kk", true),
    ("WITH t AS (SELECT kk, sum(w) AS sw, max(g) AS mg FROM t1 WHERE flag GROUP BY kk) SELECT t2.id, t.sw, t.mg FROM t2 JOIN t ON t.kk = t2.k", true),
    ("SELECT a.kk, a.n, b.n AS m FROM (SELECT kk, count(*) AS n FROM t1 GROUP BY kk) a JOIN (SELECT kk, count(*) AS n FROM t1 WHERE v > 20 GROUP BY kk) b ON b.kk = a.kk", true),
    ("SELECT id, v, rank() OVER (PARTITION BY k ORDER BY v, id) AS r FROM t1", false),
    // Over joins, partitioned by columns of one table the others reach by
    // = conditions: their changes followed to its partitions.
    ("SELECT t1.id, t1.k, t2.note, rank() OVER (PARTITION BY t1.k ORDER BY t2.note, t2.id, t1.id) AS r FROM t1 JOIN t2 ON t2.k = t1.k", true),
    ("SELECT t1.id, t1.g, count(t2.id) OVER (PARTITION BY t1.g) AS n FROM t1 LEFT JOIN t2 ON t2.k = t1.k", true),
    // Window functions partitioned by a selected column: recomputed per
    // partition of the changed rows' old and new values.
    ("SELECT id, k, v, rank() OVER (PARTITION BY k ORDER BY v, id) AS r FROM t1", true),
    ("SELECT k, g, v, sum(v) OVER (PARTITION BY k ORDER BY id) AS running, count(*) OVER (PARTITION BY k, g) AS n FROM t1 WHERE flag IS NOT FALSE", true),
    ("SELECT a, b, row_number() OVER (PARTITION BY a ORDER BY b) AS rn, lag(b) OVER (PARTITION BY a ORDER BY b) AS prev FROM t3", true),
    ("SELECT DISTINCT ON (k) k, id, v FROM t1 ORDER BY k, v, id", false),
    ("SELECT k, g, count(*) FROM t1 GROUP BY ROLLUP (k, g)", false),
    ("SELECT DISTINCT upper(g) AS ug FROM t1", true),
    ("SELECT id, (SELECT max(v) FROM t1 i WHERE i.k = o.k) AS mk FROM t1 o", true),
    ("SELECT g, count(*) FROM t1 GROUP BY g, k HAVING k > 1", false),
    ("SELECT t2.k, t3.b FROM t2, t3 WHERE t2.k = t3.a",true),
    ("SELECT k, jsonb_agg(id ORDER BY id) AS ids FROM t1 GROUP BY k", true),
    ("SELECT g, count(*) AS n FROM t1 WHERE k IS NULL GROUP BY g", true),
    ("SELECT id, v FROM t1 WHERE g = ANY (ARRAY['g1', 'g3'])", true),
    ("SELECT k, max(g) AS mg, min(g) AS ng FROM t1 GROUP BY k HAVING max(g) IS NOT NULL", true),
    ("SELECT b, sum(a) AS sa FROM t3 GROUP BY b HAVING sum(a) > 3", true),
    // Subqueries in WHERE tied to the outer query by = (EXISTS, IN, NOT IN
    // between NOT NULL columns, scalar subqueries): a change inside one
    // is followed to the outer rows it is compared with.
    ("SELECT id FROM t1 WHERE k IN (SELECT k FROM t2)", true),
    ("SELECT id, v FROM t1 WHERE EXISTS (SELECT 1 FROM t2 WHERE t2.k = t1.k)", true),
    ("SELECT id, v FROM t1 WHERE NOT EXISTS (SELECT 1 FROM t2 WHERE t2.k = t1.k AND t2.note IS NOT NULL)", true),
    ("SELECT id FROM t2 WHERE id NOT IN (SELECT id FROM t1 WHERE v > 30)", true),
    ("SELECT id, v FROM t1 o WHERE v > (SELECT avg(v) FROM t1 i WHERE i.k = o.k)", true),
    ("SELECT k, count(*) AS n, sum(v) AS s FROM t1 WHERE EXISTS (SELECT 1 FROM t2 WHERE t2.k = t1.k) GROUP BY k", true),
    ("SELECT DISTINCT g FROM t1 WHERE id IN (SELECT id FROM t2 WHERE note IS NULL)", true),
    ("SELECT count(*) AS n, sum(v) AS s FROM t1 WHERE k IN (SELECT a FROM t3 WHERE b > 1)", true),
    ("SELECT t1.id, t2.id AS id2 FROM t1 JOIN t2 ON t1.k = t2.k WHERE EXISTS (SELECT 1 FROM t3 WHERE t3.a = t2.id AND t3.b IS NOT NULL)", true),
    ("SELECT id FROM t1 WHERE EXISTS (SELECT 1 FROM t2 WHERE t2.k = t1.k AND t2.id IN (SELECT a FROM t3 WHERE t3.b > 2))", true),
    ("SELECT id, v FROM t1 WHERE v > 90 OR EXISTS (SELECT 1 FROM t2 WHERE t2.id = t1.k)", true),
    ("SELECT id, k FROM t1 WHERE k IN (SELECT k FROM t2 GROUP BY k HAVING count(*) > 1)", true),
    // IN over a grouped or DISTINCT subquery compared with a key column:
    // the affected keys are pushed into the subquery (dvm::pushdown).
    ("SELECT k, count(*) AS n, max(v) AS mx FROM t1 WHERE k IN (SELECT a FROM t3 GROUP BY a HAVING count(*) > 1) GROUP BY k", true),
    ("SELECT id, k, note FROM t2 WHERE id IN (SELECT a FROM t3 GROUP BY a HAVING sum(b) > 2)", true),
    ("SELECT t1.id, t2.id AS id2 FROM t1 JOIN t2 ON t1.k = t2.k WHERE t2.id IN (SELECT DISTINCT a FROM t3 WHERE b IS NOT NULL)", true),
    ("SELECT t2.id, t1.id AS id1, sum(t1.v) AS s FROM t1 JOIN t2 ON t1.k = t2.k WHERE t2.id IN (SELECT a FROM t3 GROUP BY a HAVING count(*) >= 1) GROUP BY t2.id, t1.id ORDER BY s DESC NULLS LAST, id, id1 LIMIT 5", true),
    ("SELECT k, g, count(*) AS n FROM t1 WHERE k IN (SELECT k FROM t2 WHERE note IS NOT NULL GROUP BY k) AND g IN (SELECT DISTINCT g FROM t1 WHERE flag) GROUP BY k, g", true),
    ("SELECT t2.note, count(*) AS n FROM t1 JOIN t2 ON t1.k = t2.k WHERE NOT EXISTS (SELECT 1 FROM t3 WHERE t3.a = t1.id) GROUP BY t2.note", true),
    ("SELECT a.id FROM t1 a WHERE EXISTS (SELECT 1 FROM t1 b WHERE b.k = a.k AND b.id <> a.id AND b.v > a.v)", true),
    // Subqueries not tied by =, and subqueries in the select list and
    // HAVING: a change of an untied table recomputes the whole query.
    ("SELECT id FROM t1 WHERE v > (SELECT avg(v) FROM t1)", true),
    ("SELECT id FROM t1 WHERE NOT (k IN (SELECT k FROM t2 WHERE t2.id > 2))", true),
    ("SELECT id FROM t1 WHERE EXISTS (SELECT 1 FROM t2 WHERE t2.k > t1.k)", true),
    ("SELECT k, count(*) AS n FROM t1 GROUP BY k HAVING count(*) > (SELECT count(*) FROM t2) / 4", true),
    ("SELECT t2.id, t2.note, (SELECT count(*) FROM t1 WHERE t1.k = t2.k AND t1.flag) AS n FROM t2", true),
    ("SELECT t1.k, max(t1.v) AS mx, (SELECT count(*) FROM t2 WHERE t2.k = t1.k) AS n2 FROM t1 GROUP BY t1.k", true),
    // ORDER BY ... LIMIT over keyed shapes (orders that decide every tie,
    // so that the fresh query's rows are the only right answer): rows,
    // running totals over one table and over a join, a grouped join,
    // DISTINCT, subqueries.
    ("SELECT id, v FROM t1 ORDER BY v DESC NULLS LAST, id LIMIT 5", true),
    ("SELECT id, k, v FROM t1 WHERE flag ORDER BY k NULLS FIRST, v DESC, id LIMIT 4", true),
    ("SELECT k, count(*) AS n, sum(v) AS s FROM t1 GROUP BY k ORDER BY n DESC, k NULLS LAST LIMIT 3", true),
    ("SELECT t2.note, count(*) AS n, sum(t1.v) AS s FROM t1 JOIN t2 ON t1.k = t2.k GROUP BY t2.note ORDER BY s DESC NULLS LAST, n, note LIMIT 2", true),
    ("SELECT t1.g, max(t2.note) AS mx FROM t1 JOIN t2 ON t2.id = t1.k GROUP BY t1.g ORDER BY mx NULLS FIRST, g LIMIT 2", true),
    ("SELECT DISTINCT k FROM t1 ORDER BY k DESC LIMIT 3", true),
    ("SELECT id, v FROM t1 WHERE EXISTS (SELECT 1 FROM t2 WHERE t2.k = t1.k) ORDER BY v, id LIMIT 3", true),
    ("SELECT t1.id, t2.id AS id2, t1.v FROM t1 JOIN t2 ON t1.k = t2.k ORDER BY t1.v DESC, t1.id, t2.id LIMIT 6", true),
    ("SELECT id, v FROM t1 ORDER BY v LIMIT 5 OFFSET 2", false),
    ("SELECT id, v FROM t1 LIMIT 5", false),
    ("SELECT id, v FROM t1 ORDER BY v + 1, id LIMIT 3", false),
    // ... and over multisets (the select list lacks a key): one table,
    // a join, slices of a correlated aggregate and of EXISTS; equal rows
    // are copies.
    ("SELECT v FROM t1 ORDER BY v LIMIT 3", true),
    ("SELECT k, v FROM t1 WHERE flag ORDER BY v DESC NULLS LAST, k NULLS FIRST LIMIT 4", true),
    ("SELECT t2.note, t1.v FROM t1 JOIN t2 ON t1.k = t2.k ORDER BY t1.v DESC NULLS LAST, t2.note NULLS LAST LIMIT 5", true),
    ("SELECT t2.k, t2.note FROM t2 WHERE t2.k > (SELECT count(*) FROM t1 WHERE t1.k = t2.id) ORDER BY t2.k DESC NULLS LAST, t2.note NULLS FIRST LIMIT 3", true),
    ("SELECT k, v FROM t1 WHERE EXISTS (SELECT 1 FROM t2 WHERE t2.k = t1.k AND t2.note IS NOT NULL) ORDER BY v NULLS FIRST, k LIMIT 4", true),
    // Aggregates over inner joins: grouping columns from one table, which
    // every other table reaches through = conditions.
    ("SELECT t2.note, count(*) AS n, sum(t1.v) AS s FROM t1 JOIN t2 ON t1.k = t2.k GROUP BY t2.note", true),
    ("SELECT t1.g, count(t2.id) AS n, max(t2.note) AS mx FROM t1 JOIN t2 ON t2.id = t1.k GROUP BY t1.g", true),
    ("SELECT a.g, count(*) AS n FROM t1 a JOIN t2 ON t2.k = a.k JOIN t1 b ON b.id = t2.id GROUP BY a.g", true),
    ("SELECT t2.k, sum(t3.b) AS sb, count(*) AS n FROM t2 JOIN t3 ON t3.a = t2.k GROUP BY t2.k", true),
    ("SELECT t1.k, t1.g, count(*) AS n FROM t1, t2 WHERE t1.k = t2.k AND t2.note IS NOT NULL GROUP BY t1.k, t1.g HAVING count(*) > 1", true),
    // Grouping columns of several tables, one table's primary key among
    // them: each group is rows of one of its rows.
    ("SELECT t1.id, t2.note, count(*) AS n, max(t2.id) AS mx FROM t1 JOIN t2 ON t2.k = t1.k GROUP BY t1.id, t2.note", true),
    ("SELECT t1.id, t1.g, t2.note, string_agg(t2.id::text, ',' ORDER BY t2.id) AS ids FROM t1 LEFT JOIN t2 ON t2.k = t1.k GROUP BY t1.id, t1.g, t2.note", true),
    ("SELECT DISTINCT t1.id, t2.note FROM t1 JOIN t2 ON t2.k = t1.k", true),
    ("SELECT t1.id, t2.note, sum(t1.v) AS s FROM t1 JOIN t2 ON t2.k = t1.k WHERE t1.k IN (SELECT a FROM t3 GROUP BY a HAVING count(*) > 1) GROUP BY t1.id, t2.note ORDER BY s DESC NULLS LAST, id, note LIMIT 4", true),
    ("SELECT t1.k, t2.note, max(t1.v) AS mx FROM t1 JOIN t2 ON t2.k = t1.k GROUP BY t1.k, t2.note", true),
    // min/max over inner joins kept from running totals: a row of a term
    // joining two tables' change rows is never taken as an extreme (a
    // self-join's change joins the table's change rows to themselves).
    ("SELECT t2.note, min(t1.v) AS lo, max(t1.w) AS hi, count(*) AS n FROM t1 JOIN t2 ON t2.k = t1.k GROUP BY t2.note", true),
    ("SELECT a.k, max(b.v) AS mx, min(a.v) AS lo FROM t1 a JOIN t1 b ON a.k = b.k GROUP BY a.k", true),
    ("SELECT t3.b, max(t1.v) AS mx, min(t2.id) AS lo FROM t1 JOIN t2 ON t2.k = t1.k JOIN t3 ON t3.a = t2.id GROUP BY t3.b HAVING max(t1.v) > 10", true),
    // Count/sum/avg over inner joins: running totals of the join's change
    // (grouping columns from any table, any join condition, keyless
    // tables, self-joins, WHERE across tables).
    ("SELECT t1.g, t2.note, count(*) AS n FROM t1 JOIN t2 ON t1.k = t2.k GROUP BY t1.g, t2.note", true),
    ("SELECT t1.g, count(*) AS n FROM t1 JOIN t2 ON t1.k < t2.k GROUP BY t1.g", true),
    ("SELECT t3.b, count(*) AS n, sum(t1.w) AS sw, avg(t1.v) AS av FROM t1 JOIN t3 ON t3.a = t1.k GROUP BY t3.b", true),
    ("SELECT count(*) AS n, sum(t1.v) AS s, count(t2.note) AS nn FROM t1, t2, t3 WHERE t1.k = t2.k AND t3.a = t2.id", true),
    ("SELECT t2.k, count(*) AS n, sum(b.v) AS s FROM t1 a JOIN t2 USING (k) JOIN t1 b ON b.id = t2.id WHERE a.flag OR b.v > 40 GROUP BY t2.k", true),
    ("SELECT a.b, count(*) AS n, sum(b.b) AS s FROM t3 a JOIN t3 b ON a.a = b.a GROUP BY a.b", true),
    // Expressions over aggregates kept in running totals, over one table
    // and over joins.
    ("SELECT k, sum(v) / count(*) AS mean, coalesce(max(v), -1) - min(v) AS spread FROM t1 GROUP BY k", true),
    ("SELECT 100.0 * sum(CASE WHEN t2.note IS NULL THEN 1 ELSE 0 END) / nullif(count(*), 0) AS pct, count(*) * 2 AS n2 FROM t1 JOIN t2 ON t1.k = t2.k", true),
    ("SELECT t2.note, round(avg(t1.v), 1) AS av, sum(t1.w) / nullif(sum(t1.v), 0) AS ratio FROM t1 JOIN t2 ON t1.k = t2.k GROUP BY t2.note", true),
    // Grouping expressions over joins, directly or through a subquery in
    // FROM that filters and projects a join (TPC-H Q7 to Q9).
    ("SELECT t1.k % 2 AS parity, count(*) AS n, sum(t2.id) AS s FROM t1 JOIN t2 ON t1.k = t2.k GROUP BY t1.k % 2", true),
    // count(x) and avg(x) beside sum(x) over a join: one argument.
    ("SELECT t2.note, count(*) AS n, count(t1.v) AS c, sum(t1.v) AS s, avg(t1.v) AS a FROM t1 JOIN t2 ON t1.k = t2.k GROUP BY t2.note", true),
    ("SELECT s.g2, s.band, count(*) AS n, sum(s.v) AS sv FROM (SELECT t1.g AS g2, CASE WHEN t1.v > 50 THEN 'hi' ELSE 'lo' END AS band, t1.v + t2.id AS v FROM t1 JOIN t2 ON t1.k = t2.k WHERE t2.id > 2) s GROUP BY s.g2, s.band", true),
    ("SELECT yr, sum(CASE WHEN note IS NULL THEN amt ELSE 0 END) / nullif(sum(amt), 0) AS share FROM (SELECT t1.k % 3 AS yr, t1.v AS amt, t2.note FROM t1, t2, t3 WHERE t1.k = t2.k AND t3.a = t2.id) x GROUP BY yr", true),
    // DISTINCT over joins, and aggregates over outer joins grouped by the
    // preserved side.
    ("SELECT DISTINCT t1.k, t1.g FROM t1 JOIN t2 ON t2.k = t1.k", true),
    ("SELECT t1.k, count(t2.id) AS n, max(t2.note) AS mx FROM t1 LEFT JOIN t2 ON t2.k = t1.k GROUP BY t1.k", true),
    ("SELECT t2.id, count(t1.id) AS n, sum(t1.v) AS s FROM t1 RIGHT JOIN t2 ON t1.k = t2.k GROUP BY t2.id", true),
    // Running totals over slices (dvm::slices): rows that fall into the
    // values of one column carried by = conditions into subqueries,
    // outer joins and grouped subqueries in FROM; a table read whole
    // (t2 or t1 below) recomputes the query when it changes.
    ("SELECT t2.note, count(*) AS n FROM t1 LEFT JOIN t2 ON t2.k = t1.k GROUP BY t2.note", true),
    ("SELECT g, count(*) AS n, sum(v) AS s FROM t1 WHERE EXISTS (SELECT 1 FROM t2 WHERE t2.id = t1.id AND t2.note IS NOT NULL) GROUP BY g", true),
    ("SELECT flag, count(*) AS n, avg(v) AS a FROM t1 WHERE NOT EXISTS (SELECT 1 FROM t2 WHERE t2.id = t1.id) GROUP BY flag", true),
    ("SELECT sum(t1.v) AS s, count(*) AS n FROM t2 JOIN t1 ON t1.k = t2.id WHERE t1.v > (SELECT avg(i.v) FROM t1 i WHERE i.k = t2.id)", true),
    ("SELECT c.n, count(*) AS freq FROM (SELECT t2.id, count(t1.id) AS n FROM t2 LEFT JOIN t1 ON t1.k = t2.id AND t1.flag GROUP BY t2.id) c GROUP BY c.n", true),
    ("SELECT g, count(*) AS n, sum(v) AS s FROM t1 WHERE v > (SELECT avg(v) FROM t1 WHERE flag) AND NOT EXISTS (SELECT 1 FROM t2 WHERE t2.id = t1.id) GROUP BY g", true),
    ("SELECT d.note, count(*) AS n, sum(t1.v) AS s FROM t1 JOIN t2 d ON d.id = t1.k WHERE EXISTS (SELECT 1 FROM t1 x WHERE x.k = t1.k AND x.id <> t1.id) GROUP BY d.note ORDER BY n DESC, note NULLS LAST LIMIT 3", true),
    ("SELECT g, count(*) AS n FROM t1 WHERE id IN (SELECT id FROM t2 WHERE note IS NOT NULL) GROUP BY g", true),
    ("SELECT count(*) AS n, sum(v) AS s FROM t1 WHERE EXISTS (SELECT 1 FROM t2 WHERE t2.id = t1.id)", true),
    ("SELECT t2.note, count(*) AS n, sum(t1.v) AS s FROM t2 JOIN t1 ON t1.id = t2.id LEFT JOIN t2 x ON x.k = t2.id WHERE t2.id IN (SELECT k FROM t1 WHERE flag) GROUP BY t2.note", true),
    // Slices touched only by changed rows that pass their reference's
    // conditions and those = conditions carry to it (TPC-H Q20): x.g's IN
    // over t3 (read whole) carried to y.g, t2.id's to t1.k and i.k.
    ("SELECT t2.note, t2.k FROM t2 WHERE t2.id IN (SELECT x.k FROM t1 x WHERE x.g IN (SELECT 'g' || b FROM t3 WHERE a > 1) AND x.v > (SELECT count(*) FROM t1 y WHERE y.k = x.k AND y.g = x.g AND y.flag))", true),
    ("SELECT count(*) AS n, sum(t1.v) AS s FROM t2 JOIN t1 ON t1.k = t2.id WHERE t2.id IN (SELECT a FROM t3 WHERE b > 1) AND t1.v > (SELECT avg(i.v) FROM t1 i WHERE i.k = t2.id AND i.flag)", true),
];

fn row_t1(r: &mut Rng, id: i64) -> String {
    let g = if r.chance(10) { "NULL".to_string() } else { format!("'g{}'", r.next(5)) };
    let w = if r.chance(10) { "NULL".to_string() } else { format!("{}.{}", r.next(50), r.next(100)) };
    let flag = if r.chance(10) {
        "NULL"
    } else if r.chance(50) {
        "true"
    } else {
        "false"
    };
    format!("({id}, {}, {g}, {}, {w}, {flag})", r.nullable(6), r.nullable(100))
}

/// One round: a random mix of statements, some in rolled-back transactions.
fn round(c: &mut Client, r: &mut Rng, next_id: &mut i64) -> Vec<String> {
    let mut log = Vec::new();
    let statements = 1 + r.next(5);
    let rollback = r.chance(15);
    let mut tx = c.transaction().unwrap();
    for _ in 0..statements {
        let sql = one_statement(r, next_id);
        tx.batch_execute(&sql).unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        log.push(sql);
    }
    if rollback {
        tx.rollback().unwrap();
        log.push("ROLLBACK".into());
    } else {
        tx.commit().unwrap();
    }
    log
}

/// One generated DML statement.
fn one_statement(r: &mut Rng, next_id: &mut i64) -> String {
    {
        match r.next(16) {
            0..=2 => {
                let n = 1 + r.next(6);
                let rows: Vec<String> = (0..n)
                    .map(|_| {
                        *next_id += 1;
                        row_t1(r, *next_id)
                    })
                    .collect();
                format!("INSERT INTO t1 VALUES {}", rows.join(", "))
            }
            3 => format!("UPDATE t1 SET v = {} WHERE id % 7 = {}", r.nullable(100), r.next(7)),
            4 => {
                format!("UPDATE t1 SET k = {} WHERE k IS NOT DISTINCT FROM {}", r.nullable(6), r.nullable(6))
            }
            5 => format!("UPDATE t1 SET g = 'g{}', flag = NOT flag WHERE id % 5 = {}", r.next(5), r.next(5)),
            6 => format!("UPDATE t1 SET id = id + 100000 WHERE id % 11 = {}", r.next(11)),
            7 => format!("DELETE FROM t1 WHERE id % 9 = {}", r.next(9)),
            8 => format!("DELETE FROM t1 WHERE k IS NOT DISTINCT FROM {}", r.nullable(6)),
            9 => "DELETE FROM t1 WHERE (k, v) IN (SELECT k, max(v) FROM t1 GROUP BY k)".into(),
            10 => {
                *next_id += 1;
                format!(
                    "INSERT INTO t2 VALUES ({}, {}, {}) ON CONFLICT (id) DO UPDATE SET note = excluded.note",
                    *next_id % 60,
                    r.nullable(6),
                    if r.chance(20) { "NULL".to_string() } else { format!("'n{}'", r.next(9)) }
                )
            }
            11 => format!("DELETE FROM t2 WHERE id % 4 = {}", r.next(4)),
            12 => {
                let n = 1 + r.next(4);
                let rows: Vec<String> =
                    (0..n).map(|_| format!("({}, {})", r.nullable(4), r.nullable(5))).collect();
                // Duplicates are likely: t3 has no key.
                format!("INSERT INTO t3 VALUES {}, {}", rows.join(", "), rows[0])
            }
            // One statement inserting into two tables: both statements
            // pending at once (IMMEDIATE must not apply either from its
            // new rows alone: dvm::inserted).
            14 if r.chance(50) => {
                *next_id += 1;
                let row = row_t1(r, *next_id);
                format!(
                    "WITH x AS (INSERT INTO t1 VALUES {row} RETURNING id) \
                     INSERT INTO t2 VALUES ({}, {}, 'cte') ON CONFLICT (id) DO UPDATE SET k = excluded.k",
                    *next_id % 60,
                    r.nullable(6)
                )
            }
            // One statement writing two tables: the capture triggers of
            // both fire at its end, each with the other's rows written.
            14 => format!(
                "WITH x AS (UPDATE t1 SET k = {} WHERE id % 5 = {} RETURNING id) \
                 UPDATE t2 SET k = {} WHERE k IS NOT DISTINCT FROM {}",
                r.nullable(6),
                r.next(5),
                r.nullable(6),
                r.nullable(6)
            ),
            15 => {
                let base = *next_id;
                *next_id += 60;
                format!(
                    "WITH d AS (DELETE FROM t2 WHERE id % 3 = {} RETURNING id, k) \
                     INSERT INTO t1 SELECT {base} + row_number() OVER (), k, 'g1', {}, 1.5, true FROM d",
                    r.next(3),
                    r.nullable(100)
                )
            }
            _ => {
                if r.chance(8) {
                    "TRUNCATE t3".to_string()
                } else {
                    format!("DELETE FROM t3 WHERE ctid IN (SELECT ctid FROM t3 WHERE a IS NOT DISTINCT FROM {} LIMIT 1)", r.nullable(4))
                }
            }
        }
    }
}

fn mismatch(c: &mut impl postgres::GenericClient, st: &str, query: &str) -> i64 {
    c.query_one(&differences_sql(st, query), &[]).unwrap().get(0)
}

/// A database with the oracle's tables and 40 generated rows in t1.
fn setup(db: &str, r: &mut Rng, next_id: &mut i64) -> Client {
    let mut c = fresh_db(db, true);
    // Never trade a differential refresh for a FULL one: the DVM is what is
    // under test here (small tables make most windows "large").
    c.batch_execute(
        "SET client_min_messages = warning;
         SET pg_trickle.differential_max_change_fraction = 1000;
         CREATE TABLE t1 (id int PRIMARY KEY, k int, g text, v int, w numeric, flag bool,
                          kk int GENERATED ALWAYS AS (coalesce(k, 0) % 3) STORED NOT NULL);
         CREATE INDEX ON t1 (k); CREATE INDEX ON t1 (g);
         CREATE TABLE t2 (id int PRIMARY KEY, k int, note text);
         CREATE TABLE t3 (a int, b int);",
    )
    .unwrap();
    let rows: Vec<String> = (0..40)
        .map(|_| {
            *next_id += 1;
            row_t1(r, *next_id)
        })
        .collect();
    c.batch_execute(&format!("INSERT INTO t1 VALUES {}", rows.join(", "))).unwrap();
    // (Sizes known: the fallback compares the changes with them.)
    c.batch_execute("ANALYZE t1, t2, t3").unwrap();
    c
}

/// An ordinary role owning the stream tables of [`run_seed`]'s variant:
/// a refresh then runs its statements as that role, which may not read
/// the change buffers, so running totals and changed rows' images give
/// way to recomputing affected keys from the tables.
const ORDINARY_OWNER: &str = "pgt_oracle_owner";

fn run_seed(seed: u64, rounds: usize) {
    run_seed_owned(seed, rounds, None)
}

fn run_seed_owned(seed: u64, rounds: usize, owner: Option<&str>) {
    let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut next_id = 0i64;
    let db = match owner {
        Some(_) => format!("e2e_oracle_owned_{seed}"),
        None => format!("e2e_oracle_{seed}"),
    };
    let mut c = setup(&db, &mut r, &mut next_id);
    if let Some(role) = owner {
        c.batch_execute(&format!(
            "DO $$ BEGIN CREATE ROLE {role}; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
             GRANT SELECT, TRIGGER ON t1, t2, t3 TO {role};
             GRANT CREATE ON SCHEMA public TO {role};"
        ))
        .unwrap();
    }
    round(&mut c, &mut r, &mut next_id);
    let mut differential_count = 0;
    let mut unexpected: Vec<String> = Vec::new();
    for (i, (query, differential)) in CORPUS.iter().enumerate() {
        let (as_owner, reset) = match owner {
            Some(role) => (format!("SET ROLE {role}; "), "; RESET ROLE"),
            None => (String::new(), ""),
        };
        c.batch_execute(&format!(
            "{as_owner}CREATE MATERIALIZED VIEW st_{i} WITH (pgtrickle.stream = true) AS {query}{reset}"
        ))
        .unwrap_or_else(|e| panic!("creating st_{i} ({query}): {e}"));
        let mode: String = c
            .query_one(
                "SELECT refresh_mode FROM pgtrickle.stream_tables WHERE name = $1",
                &[&format!("st_{i}")],
            )
            .unwrap()
            .get(0);
        differential_count += i64::from(mode == "differential");
        // (An ordinary owner's stream table reading the buffers' rows
        // alone, a filter without a key, is refreshed in FULL.)
        if owner.is_none() {
            let expected = if *differential { "differential" } else { "full" };
            if mode != expected {
                unexpected.push(format!("st_{i} ({query}) resolved to {mode}"));
            }
        }
    }
    assert!(unexpected.is_empty(), "modes other than expected:\n{}", unexpected.join("\n"));
    // (The aggregates of aggregates' WITH queries and subqueries: three
    // (those grouped by k, NULL included, are slices); the four scalar
    // subqueries looked up; for the ordinary owner also the other two
    // aggregates of aggregates, the grouped subquery in FROM of a filter,
    // that of the histogram over a LEFT JOIN and the five grouped
    // subqueries and WITH queries of the queries over kk, which slices
    // maintain for a superuser.)
    let inner: i64 = c
        .query_one("SELECT count(*) FROM pgtrickle.stream_tables WHERE name LIKE 'inner\\_%'", &[])
        .unwrap()
        .get(0);
    assert_eq!(inner, if owner.is_some() { 16 } else { 7 }, "inner stream tables");
    // The queries over inner stream tables, which a FULL refresh runs (the
    // differential ones never fall back here): checked against their
    // queries after every round too.
    let mut over_inner: Vec<(usize, String)> = Vec::new();
    for i in 0..CORPUS.len() {
        let row = c
            .query_opt(
                "SELECT value FROM pgtrickle.explain_stream_table($1) \
                  WHERE property = 'query over inner stream tables'",
                &[&format!("st_{i}")],
            )
            .unwrap();
        if let Some(row) = row {
            over_inner.push((i, row.get(0)));
        }
    }
    for n in 0..rounds {
        let log = round(&mut c, &mut r, &mut next_id);
        // Refresh in a random order, sometimes several in one transaction.
        let mut order: Vec<usize> = (0..CORPUS.len()).collect();
        for j in (1..order.len()).rev() {
            order.swap(j, r.next(j as u64 + 1) as usize);
        }
        for chunk in order.chunks(1 + r.next(4) as usize) {
            let sql: String = chunk.iter().map(|i| format!("REFRESH MATERIALIZED VIEW st_{i};")).collect();
            // Now and then a window of any size is too large: the FULL
            // fallback (from running totals, where there are some).
            let fallback = if r.next(8) == 0 {
                "SET LOCAL pg_trickle.differential_max_change_fraction = 0; "
            } else {
                ""
            };
            c.batch_execute(&format!("BEGIN; {fallback}{sql} COMMIT;"))
                .unwrap_or_else(|e| panic!("seed {seed} round {n}: {sql}: {e:?}"));
        }
        for (i, (query, _)) in CORPUS.iter().enumerate() {
            let bad = mismatch(&mut c, &format!("st_{i}"), query);
            assert_eq!(bad, 0, "seed {seed}, round {n}: st_{i} differs from its query by {bad} rows\n  query: {query}\n  round's DML: {log:#?}");
        }
        for (i, over) in &over_inner {
            let query = CORPUS[*i].0;
            let bad = mismatch(&mut c, &format!("({over}) over_inner"), query);
            assert_eq!(bad, 0, "seed {seed}, round {n}: st_{i}'s query over its inner stream tables differs from its query by {bad} rows\n  query: {query}\n  over them: {over}\n  round's DML: {log:#?}");
        }
    }
    // The differential stream tables really were refreshed differentially.
    let diff_refreshes: i64 = c
        .query_one("SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE mode = 'differential'", &[])
        .unwrap()
        .get(0);
    let expected_min = differential_count * (rounds as i64 / 2);
    assert!(
        diff_refreshes >= expected_min,
        "only {diff_refreshes} differential refreshes (expected ≥ {expected_min})"
    );
    // And some fell back to FULL, a window too large.
    let fallbacks: i64 = c
        .query_one(
            "SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE mode = 'full' AND message LIKE '%exceed%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(rounds < 4 || fallbacks > 0, "no refresh fell back to FULL");
}

fn seeds() -> Vec<u64> {
    std::env::var("PGT_ORACLE_SEEDS")
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|_| vec![1, 2, 3])
}

fn rounds() -> usize {
    std::env::var("PGT_ORACLE_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(15)
}

/// IMMEDIATE: every maintainable query of the corpus as an IMMEDIATE stream
/// table, compared with its query after every statement, inside and after
/// transactions, with savepoints rolled back and whole transactions too.
fn run_immediate_seed(seed: u64, rounds: usize) {
    let mut r = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
    let mut next_id = 0i64;
    let mut c = setup(&format!("e2e_oracle_imm_{seed}"), &mut r, &mut next_id);
    let mut immediate: Vec<(usize, &str)> =
        CORPUS.iter().enumerate().filter(|(_, (_, d))| *d).map(|(i, (q, _))| (i, *q)).collect();
    for (i, query) in &immediate {
        c.batch_execute(&format!(
            "CREATE MATERIALIZED VIEW im_{i} WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'immediate') AS {query}"
        ))
        .unwrap_or_else(|e| panic!("creating im_{i} ({query}): {e:?}"));
    }
    // The others: those with aggregating parts (aggregates of aggregates,
    // aggregating scalar subqueries) are recomputed over their inner
    // stream tables by each statement (dvm::nested::over_inners); the rest
    // are refused.
    let mut over_inners = Vec::new();
    for (i, (query, _)) in CORPUS.iter().enumerate().filter(|(_, (_, d))| !*d) {
        let created = c.batch_execute(&format!(
            "SET client_min_messages = warning; \
             CREATE MATERIALIZED VIEW im_{i} WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'immediate') AS {query}"
        ));
        if created.is_ok() {
            over_inners.push((i, *query));
        }
    }
    assert!(
        over_inners.len() >= 6
            && over_inners.iter().all(|(_, q)| q.contains("GROUP BY") || q.contains("(SELECT")),
        "IMMEDIATE over inner stream tables: {over_inners:?}"
    );
    immediate.extend(over_inners);
    // Row triggers that write the table their statement wrote (some new
    // rows of t1 deleted, some of t3, without a key, updated): the
    // statements they run are maintained before the one that fired them.
    c.batch_execute(
        "CREATE FUNCTION oracle_nested_t1() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
           IF NEW.v % 7 = 3 THEN DELETE FROM t1 WHERE id = NEW.id; END IF;
           RETURN NULL;
         END $$;
         CREATE FUNCTION oracle_nested_t3() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
           IF NEW.a % 5 = 1 THEN
             UPDATE t3 SET b = coalesce(b, 0) + 100 WHERE a = NEW.a AND b IS NOT DISTINCT FROM NEW.b;
           END IF;
           RETURN NULL;
         END $$;
         CREATE TRIGGER nested AFTER INSERT ON t1 FOR EACH ROW EXECUTE FUNCTION oracle_nested_t1();
         CREATE TRIGGER nested AFTER INSERT ON t3 FOR EACH ROW EXECUTE FUNCTION oracle_nested_t3();",
    )
    .unwrap();
    let check = |c: &mut postgres::Transaction<'_>, at: &str| {
        for (i, query) in &immediate {
            let bad = mismatch(c, &format!("im_{i}"), query);
            assert_eq!(
                bad, 0,
                "seed {seed}, {at}: im_{i} differs from its query by {bad} rows\n  query: {query}"
            );
        }
    };
    for n in 0..rounds {
        immediate_round(&mut c, &mut r, seed, n, &mut |r| one_statement(r, &mut next_id), &check);
    }
}

/// One round of the IMMEDIATE oracles: a transaction of 1 to 4 generated
/// statements (some inside a savepoint rolled back), `check`ed after every
/// statement, committed or (one time in seven) rolled back, and checked
/// again.
fn immediate_round(
    c: &mut Client,
    r: &mut Rng,
    seed: u64,
    n: usize,
    statement: &mut dyn FnMut(&mut Rng) -> String,
    check: &dyn Fn(&mut postgres::Transaction<'_>, &str),
) {
    let mut tx = c.transaction().unwrap();
    for s in 0..1 + r.next(4) {
        let sql = statement(r);
        let savepoint = r.chance(20);
        if savepoint {
            tx.batch_execute("SAVEPOINT sp").unwrap();
        }
        tx.batch_execute(&sql).unwrap_or_else(|e| panic!("seed {seed} round {n}: {sql}: {e:?}"));
        if savepoint {
            tx.batch_execute("ROLLBACK TO SAVEPOINT sp").unwrap();
        }
        check(&mut tx, &format!("round {n}, after statement {s}: {sql}"));
    }
    if r.chance(15) {
        tx.rollback().unwrap();
    } else {
        tx.commit().unwrap();
    }
    let mut tx = c.transaction().unwrap();
    check(&mut tx, &format!("round {n}, after commit/rollback"));
    tx.commit().unwrap();
}

#[test]
fn oracle_corpus_immediate_after_every_statement() {
    for seed in seeds() {
        run_immediate_seed(seed, rounds());
    }
}

#[test]
fn oracle_corpus_with_an_ordinary_owner() {
    let seed = seeds().first().copied().unwrap_or(1);
    run_seed_owned(seed, rounds(), Some(ORDINARY_OWNER));
}

#[test]
fn oracle_corpus_matches_fresh_queries() {
    assert!(CORPUS.len() >= 60, "the corpus has {} queries", CORPUS.len());
    for seed in seeds() {
        run_seed(seed, rounds());
    }
}

/// Stream tables reading differential stream tables (`mid1`, `mid2`, and a
/// third level `top`), each maintained from the changes its upstream's
/// refreshes captured. (query, maintained differentially?)
const CHAIN: &[(&str, bool)] = &[
    ("SELECT id, v FROM mid1 WHERE k > 2", true),
    ("SELECT k, count(*) AS n, max(v) AS mx FROM mid1 GROUP BY k", true),
    ("SELECT DISTINCT g FROM mid1", true),
    ("SELECT mid1.id, t2.id AS id2, t2.note FROM mid1 JOIN t2 ON mid1.k = t2.k", true),
    ("SELECT k, n, s FROM mid2 WHERE n > 1", true),
    ("SELECT mid2.k, mid2.n, t2.id AS id2 FROM mid2 LEFT JOIN t2 ON t2.k = mid2.k", true),
    ("SELECT n, count(*) AS c FROM mid2 GROUP BY n", true),
    ("SELECT sum(n) AS total FROM mid2", true),
    ("SELECT mid1.id, mid2.k, mid2.s FROM mid1 JOIN mid2 ON mid2.k = mid1.k WHERE mid1.flag", true),
    ("SELECT id, v FROM mid1 WHERE k > 1 UNION ALL SELECT k, s FROM mid2", true),
    ("SELECT k, count(*) AS n, sum(v) AS s FROM mid3 GROUP BY k", true),
    ("SELECT v, k FROM mid3 WHERE k > 1", true),
    ("SELECT id, count(*) AS c, max(v) AS mv FROM mid4 GROUP BY id", true),
    ("SELECT DISTINCT v FROM mid4", true),
];

fn run_chain_seed(seed: u64, rounds: usize) {
    let mut r = Rng(seed.wrapping_mul(0x5851_f42d_4c95_7f2d) | 1);
    let mut next_id = 0i64;
    let mut c = setup(&format!("e2e_oracle_chain_{seed}"), &mut r, &mut next_id);
    let mids = [
        ("mid1", "SELECT id, k, g, v, w, flag FROM t1 WHERE v IS NULL OR v > 10"),
        ("mid2", "SELECT k, count(*) AS n, sum(v) AS s FROM t1 GROUP BY k"),
        // Multisets: no unique key, changes written from the delta of the
        // changed rows (mid3) and from the multiset apply (mid4).
        ("mid3", "SELECT k, v, g FROM t1 WHERE v > 5"),
        ("mid4", "SELECT id, v FROM t1 WHERE v > 30 UNION ALL SELECT id, k FROM t2"),
    ];
    for (name, query) in mids {
        c.batch_execute(&format!(
            "CREATE MATERIALIZED VIEW {name} WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS {query}"
        ))
        .unwrap();
    }
    let mut all: Vec<(String, String, bool)> = Vec::new();
    for (i, (query, differential)) in CHAIN.iter().enumerate() {
        let name = format!("c_{i}");
        c.batch_execute(&format!("CREATE MATERIALIZED VIEW {name} WITH (pgtrickle.stream) AS {query}"))
            .unwrap_or_else(|e| panic!("creating {name} ({query}): {e}"));
        all.push((name, query.to_string(), *differential));
    }
    let top = "SELECT k, mx FROM c_1 WHERE mx > 20";
    c.batch_execute(&format!("CREATE MATERIALIZED VIEW top WITH (pgtrickle.stream) AS {top}")).unwrap();
    all.push(("top".into(), top.into(), true));
    for (name, query, differential) in &all {
        let mode: String = c
            .query_one("SELECT refresh_mode FROM pgtrickle.stream_tables WHERE name = $1", &[name])
            .unwrap()
            .get(0);
        let expected = if *differential { "differential" } else { "full" };
        assert_eq!(mode, expected, "{name} ({query}) resolved to {mode}");
    }
    for n in 0..rounds {
        let log = round(&mut c, &mut r, &mut next_id);
        // Upstream first; sometimes an upstream is left unrefreshed for a
        // round, sometimes refreshed in FULL (applied as differences, which
        // its readers receive), sometimes in the same transaction as them.
        let mut sql = String::from("BEGIN;");
        let mut stale = Vec::new();
        for (name, _) in mids {
            match r.next(10) {
                0 => stale.push(name),
                1 => sql.push_str(&format!(
                    "SET LOCAL pg_trickle.differential_max_change_fraction = 0; REFRESH MATERIALIZED VIEW {name}; \
                     SET LOCAL pg_trickle.differential_max_change_fraction = 1000;"
                )),
                _ => sql.push_str(&format!("REFRESH MATERIALIZED VIEW {name};")),
            }
        }
        if r.chance(50) {
            sql.push_str("COMMIT; BEGIN;");
        }
        let mut order: Vec<usize> = (0..CHAIN.len()).collect();
        for j in (1..order.len()).rev() {
            order.swap(j, r.next(j as u64 + 1) as usize);
        }
        for i in order {
            sql.push_str(&format!("REFRESH MATERIALIZED VIEW c_{i};"));
        }
        sql.push_str("REFRESH MATERIALIZED VIEW top; COMMIT;");
        c.batch_execute(&sql).unwrap_or_else(|e| panic!("seed {seed} round {n}: {sql}: {e:?}"));
        for (name, query) in mids
            .iter()
            .filter(|(n, _)| !stale.contains(n))
            .map(|(n, q)| (n.to_string(), q.to_string()))
            .chain(all.iter().map(|(n, q, _)| (n.clone(), q.clone())))
        {
            let bad = mismatch(&mut c, &name, &query);
            assert_eq!(bad, 0, "seed {seed}, round {n}: {name} differs from its query by {bad} rows\n  query: {query}\n  round's DML: {log:#?}\n  refreshes: {sql}");
        }
    }
    let diff_refreshes: i64 = c
        .query_one(
            "SELECT count(*) FROM pgtrickle.pgt_refresh_history
              WHERE mode = 'differential' AND relid::regclass::text NOT LIKE 'mid%'",
            &[],
        )
        .unwrap()
        .get(0);
    let expected_min = all.iter().filter(|(_, _, d)| *d).count() as i64 * (rounds as i64 / 3);
    assert!(
        diff_refreshes >= expected_min,
        "only {diff_refreshes} differential refreshes downstream (expected ≥ {expected_min})"
    );
}

/// The chain above, every level IMMEDIATE: each statement on `t1`/`t2`
/// maintains the `mid` stream tables, which hand the rows they changed to
/// the stream tables reading them, and so on up to `top`. Checked after
/// every statement, with savepoints, rollbacks, and now and then a REFRESH
/// of an upstream (recomputed whole, and its readers with it).
fn run_immediate_chain_seed(seed: u64, rounds: usize) {
    let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut next_id = 0i64;
    let mut c = setup(&format!("e2e_oracle_imm_chain_{seed}"), &mut r, &mut next_id);
    let mut all: Vec<(String, String)> = vec![
        ("mid1".into(), "SELECT id, k, g, v, w, flag FROM t1 WHERE v IS NULL OR v > 10".into()),
        ("mid2".into(), "SELECT k, count(*) AS n, sum(v) AS s FROM t1 GROUP BY k".into()),
        ("mid3".into(), "SELECT k, v, g FROM t1 WHERE v > 5".into()),
        ("mid4".into(), "SELECT id, v FROM t1 WHERE v > 30 UNION ALL SELECT id, k FROM t2".into()),
    ];
    all.extend(CHAIN.iter().enumerate().map(|(i, (q, _))| (format!("c_{i}"), q.to_string())));
    all.push(("top".into(), "SELECT k, mx FROM c_1 WHERE mx > 20".into()));
    for (name, query) in &all {
        c.batch_execute(&format!(
            "CREATE MATERIALIZED VIEW {name} WITH (pgtrickle.stream, pgtrickle.refresh_mode = immediate) AS {query}"
        ))
        .unwrap_or_else(|e| panic!("creating {name} ({query}): {e:?}"));
    }
    // DIFFERENTIAL readers of the IMMEDIATE ones, from the rows their
    // maintenance writes to their change buffers, refreshed after each
    // round.
    let differential: Vec<(String, String)> = [
        "SELECT k, count(*) AS n, max(v) AS mx FROM mid1 GROUP BY k",
        "SELECT k, n, s FROM mid2 WHERE n > 1",
        "SELECT mid1.id, mid2.k, mid2.s FROM mid1 JOIN mid2 ON mid2.k = mid1.k",
        "SELECT DISTINCT v FROM mid4",
        "SELECT k, count(*) AS n, sum(v) AS s FROM mid3 GROUP BY k",
    ]
    .iter()
    .enumerate()
    .map(|(i, q)| (format!("d_{i}"), q.to_string()))
    .collect();
    for (name, query) in &differential {
        c.batch_execute(&format!(
            "CREATE MATERIALIZED VIEW {name} WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS {query}"
        ))
        .unwrap_or_else(|e| panic!("creating {name} ({query}): {e:?}"));
    }
    let check = |c: &mut postgres::Transaction<'_>, at: &str| {
        for (name, query) in &all {
            let bad = mismatch(c, name, query);
            assert_eq!(
                bad, 0,
                "seed {seed}, {at}: {name} differs from its query by {bad} rows\n  query: {query}"
            );
        }
    };
    for n in 0..rounds {
        let mut next = |r: &mut Rng| {
            if r.chance(5) {
                format!("REFRESH MATERIALIZED VIEW mid{}", 1 + r.next(4))
            } else {
                one_statement(r, &mut next_id)
            }
        };
        immediate_round(&mut c, &mut r, seed, n, &mut next, &check);
        for (name, query) in &differential {
            c.batch_execute(&format!("REFRESH MATERIALIZED VIEW {name}")).unwrap();
            let bad = mismatch(&mut c, name, query);
            assert_eq!(
                bad, 0,
                "seed {seed}, round {n}: {name} differs from its query by {bad} rows after its refresh\n  query: {query}"
            );
        }
    }
    let modes: i64 = c
        .query_one(
            "SELECT count(*) FROM pgtrickle.stream_tables WHERE name LIKE 'd!_%' ESCAPE '!' AND refresh_mode = 'differential'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(modes, differential.len() as i64, "the readers of IMMEDIATE stream tables stay DIFFERENTIAL");
}

#[test]
fn oracle_immediate_stream_tables_on_stream_tables() {
    for seed in seeds() {
        run_immediate_chain_seed(seed, rounds());
    }
}

#[test]
fn oracle_stream_tables_on_stream_tables() {
    for seed in seeds() {
        run_chain_seed(seed, rounds());
    }
}
