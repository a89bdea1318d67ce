-- What the instances of one deployment must agree on (docs/operations.md, "One secret per
-- deployment"): one row, the fingerprint of the server secret (an HMAC of a fixed label under
-- the secret, never the secret). Written by the first instance that starts, replaced by
-- `mailcode secret rotate`. Used only without Redis: with Redis the record is a Redis key.
CREATE TABLE deployment (
    id                 SMALLINT PRIMARY KEY CHECK (id = 1),
    secret_fingerprint TEXT     NOT NULL
);
