-- The report sums denied uses; they are rare, so a partial index holds only
-- those rows and spares the report a scan of every usage total.
CREATE INDEX usage_totals_denied ON usage_totals(allowed) WHERE allowed = 0;
-- The open finding of one subject and kind is looked up for every finding a
-- batch raises. With only (subject, kind) the planner may take
-- findings_kind (kind, status) instead and walk every open finding of the
-- kind; an index on all three columns is the unambiguous choice.
DROP INDEX findings_subject;
CREATE INDEX findings_open ON findings(subject, kind, status);
