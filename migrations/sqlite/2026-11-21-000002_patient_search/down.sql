DROP TRIGGER IF EXISTS trg_patient_organizations_archive;
DROP TRIGGER IF EXISTS trg_patient_organizations_delete;
DROP TRIGGER IF EXISTS trg_patient_organizations_insert;
DROP TRIGGER IF EXISTS trg_organizations_counts;
DROP TABLE IF EXISTS organization_patient_counts;
DROP INDEX IF EXISTS idx_patient_organizations_org_created;
DROP TABLE IF EXISTS patient_search_terms;
