DROP TABLE signing_requests;
DROP TABLE citizen_signing_keys;
DROP TABLE signing_ca;
DROP TABLE subjects;
