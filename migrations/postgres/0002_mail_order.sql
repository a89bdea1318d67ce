-- A queued mail holds what it will say (a sealed `MailOrder`, a few dozen bytes) instead of the
-- written mail (subject, text and HTML, sealed, ~2 KB): the worker writes it just before sending.
-- A mail still queued by an older version has an empty order and is marked failed by the worker;
-- its visitor asks for a new code.
ALTER TABLE mail_queue
    ADD COLUMN mail_order TEXT NOT NULL DEFAULT '',
    DROP COLUMN subject,
    DROP COLUMN text_body,
    DROP COLUMN html_body;
