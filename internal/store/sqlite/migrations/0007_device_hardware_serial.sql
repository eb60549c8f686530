-- Keyward schema, version 7 (SQLite): the hardware serial a pre-issued credential was injected into
-- ('keyward factory inject'), recorded with the device at reconciliation; '' where the device's identity
-- serial is its own (EST enrollment). One device per hardware serial and product line.

ALTER TABLE devices ADD COLUMN hardware_serial TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX devices_hardware_serial ON devices (environment, product_line, hardware_serial) WHERE hardware_serial <> '';
