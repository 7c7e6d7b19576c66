DROP TABLE activation_codes;
DROP INDEX citizens_id_doc_hash;
ALTER TABLE citizens DROP COLUMN id_doc_hash;
ALTER TABLE citizens DROP COLUMN id_doc_sealed;
ALTER TABLE citizens DROP COLUMN gender;
ALTER TABLE citizens DROP COLUMN date_of_birth;
