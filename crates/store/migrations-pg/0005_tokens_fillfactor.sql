-- Revoking a token rewrites its row (revoked_at, trigger, reason, event),
-- none of them indexed: room left on each page lets PostgreSQL update in
-- place (HOT) instead of adding an entry to every index of the table, which
-- is most of the cost of revoking a large lineage at once.
ALTER TABLE tokens SET (fillfactor = 70);
