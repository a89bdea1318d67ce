-- Webhook deliveries (SPEC §7) share the durable outbox with mail: one queue of deliveries. A
-- delivery's `kind` says which worker takes it; for a webhook `to_addr` is the URL, `mail_order`
-- the event's body and `mail_ref` its `webhook-id`. Written in the same transaction as the change
-- the event reports (src/store/sql/outbox.rs).
ALTER TABLE mail_queue ADD COLUMN kind TEXT NOT NULL DEFAULT 'mail';
DROP INDEX mail_queue_due;
CREATE INDEX mail_queue_due ON mail_queue (kind, status, next_attempt_at);
