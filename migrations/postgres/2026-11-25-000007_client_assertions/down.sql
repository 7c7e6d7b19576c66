DROP TABLE jti_records;
ALTER TABLE clients DROP COLUMN fapi;
ALTER TABLE clients DROP COLUMN jwks;
