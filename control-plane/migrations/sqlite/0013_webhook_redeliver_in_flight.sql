-- A redeliver asked for while an attempt of the same delivery is in flight (the delivery is
-- claimed): set here, so that the attempt's outcome, recorded after it, leaves the delivery
-- due again instead of settling it (`control-plane/src/store/sql/outbox.rs`).
ALTER TABLE webhook_deliveries ADD COLUMN redeliver INTEGER NOT NULL DEFAULT 0;
