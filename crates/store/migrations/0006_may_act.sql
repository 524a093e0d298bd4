-- RFC 8693 §4.4 may_act: who may act on this token's behalf.
ALTER TABLE tokens ADD COLUMN may_act TEXT;
