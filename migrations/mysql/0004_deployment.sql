-- What the instances of one deployment must agree on (docs/operations.md, "One secret per
-- deployment"): one row, the fingerprint of the server secret (an HMAC of a fixed label under
-- the secret, never the secret). Written by the first instance that starts, replaced by
-- `mailcode secret rotate`. Used only without Redis: with Redis the record is a Redis key.
CREATE TABLE deployment (
    id                 TINYINT     NOT NULL,
    secret_fingerprint VARCHAR(64) NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT deployment_one_row CHECK (id = 1)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
