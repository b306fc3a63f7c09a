-- A Linky has two numbers: the delivery point's PRM (14 digits, which stays when the meter is
-- replaced) and the meter's own serial (12 digits), which its TIC frames carry as ADSC
-- (standard mode) or ADCO (historic mode). Frames are matched on the serial.
-- A 12-digit meter_id was a serial: it moves to meter_serial.
ALTER TABLE devices ADD COLUMN meter_serial text UNIQUE CHECK (meter_serial ~ '^[0-9]{12}$');
UPDATE devices SET meter_serial = meter_id, meter_id = NULL WHERE meter_id ~ '^[0-9]{12}$';
ALTER TABLE devices DROP CONSTRAINT devices_meter_id_check;
ALTER TABLE devices ADD CONSTRAINT devices_meter_id_check CHECK (meter_id ~ '^[0-9]{14}$');
COMMENT ON COLUMN devices.meter_id IS 'Linky delivery point (PRM, point de livraison): 14 digits.';
COMMENT ON COLUMN devices.meter_serial IS 'Linky meter serial: ADSC/ADCO of its TIC frames, 12 digits; maps frames to the device.';
