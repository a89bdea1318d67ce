-- Webhook deliveries (SPEC §7) share the durable outbox with mail: one queue of deliveries. A
-- delivery's `kind` says which worker takes it; for a webhook `to_addr` is the URL (up to 2048
-- bytes), `mail_order` the event's body (a few hundred bytes) and `mail_ref` its `webhook-id`.
-- Written in the same transaction as the change the event reports (src/store/sql/outbox.rs).
ALTER TABLE mail_queue
    ADD COLUMN kind VARCHAR(16) NOT NULL DEFAULT 'mail' AFTER mail_ref,
    MODIFY COLUMN to_addr VARCHAR(2048) NOT NULL,
    MODIFY COLUMN mail_order TEXT NOT NULL,
    DROP INDEX mail_queue_due,
    ADD INDEX mail_queue_due (kind, status, next_attempt_at);
