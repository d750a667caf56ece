DROP TRIGGER IF EXISTS trg_patient_organizations_counts ON patient_organizations;
DROP FUNCTION IF EXISTS cohort_patient_organization_counts();
DROP TRIGGER IF EXISTS trg_organizations_counts ON organizations;
DROP FUNCTION IF EXISTS cohort_organization_counts_row();
DROP TABLE IF EXISTS organization_patient_counts;
DROP INDEX IF EXISTS idx_patient_organizations_org_created;
DROP TABLE IF EXISTS patient_search_terms;
