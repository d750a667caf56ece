-- Keyword search over patients: one row per normalized word (lower case, accents folded) of a
-- patient's names, e-mail, identifiers and birth date. A query term matches the start of a
-- word through a range scan on (term, patient_id).
CREATE TABLE patient_search_terms (
    patient_id BIGINT NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
    term TEXT NOT NULL,
    PRIMARY KEY (patient_id, term)
) WITHOUT ROWID;
CREATE INDEX idx_patient_search_terms_term ON patient_search_terms(term, patient_id);

-- An organization's list is paged on the link row itself: it carries the patient's sort keys
-- (name folded for case and accents, birth date), so a page a thousand deep is a walk along
-- one covering index. Kept in step by the application on every change of a patient; an
-- unknown birth date is kept as 9999-12-31 so it sorts last on both backends.
ALTER TABLE patient_organizations ADD COLUMN sort_name TEXT NOT NULL DEFAULT '';
ALTER TABLE patient_organizations ADD COLUMN birth_date DATE;
UPDATE patient_organizations SET
    sort_name = (SELECT lower(p.name_family || ' ' || p.name_given) FROM patients p WHERE p.id = patient_organizations.patient_id),
    birth_date = (SELECT COALESCE(p.birth_date, '9999-12-31') FROM patients p WHERE p.id = patient_organizations.patient_id);
CREATE INDEX idx_patient_organizations_org_name ON patient_organizations(organization_id, sort_name, patient_id, archived_at);
CREATE INDEX idx_patient_organizations_org_birth ON patient_organizations(organization_id, birth_date, patient_id, archived_at);
CREATE INDEX idx_patient_organizations_org_created ON patient_organizations(organization_id, created_at, patient_id, archived_at);

-- How many patients each organization holds, kept exact by triggers on every link change,
-- so a list of a million patients shows its total without counting them.
CREATE TABLE organization_patient_counts (
    organization_id BIGINT PRIMARY KEY NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    active BIGINT NOT NULL DEFAULT 0,
    archived BIGINT NOT NULL DEFAULT 0
);
INSERT INTO organization_patient_counts (organization_id, active, archived)
SELECT o.id,
       (SELECT COUNT(*) FROM patient_organizations po WHERE po.organization_id = o.id AND po.archived_at IS NULL),
       (SELECT COUNT(*) FROM patient_organizations po WHERE po.organization_id = o.id AND po.archived_at IS NOT NULL)
FROM organizations o;

CREATE TRIGGER trg_organizations_counts AFTER INSERT ON organizations
BEGIN
    INSERT INTO organization_patient_counts (organization_id) VALUES (NEW.id);
END;
CREATE TRIGGER trg_patient_organizations_insert AFTER INSERT ON patient_organizations
BEGIN
    UPDATE organization_patient_counts
       SET active = active + (NEW.archived_at IS NULL), archived = archived + (NEW.archived_at IS NOT NULL)
     WHERE organization_id = NEW.organization_id;
END;
CREATE TRIGGER trg_patient_organizations_delete AFTER DELETE ON patient_organizations
BEGIN
    UPDATE organization_patient_counts
       SET active = active - (OLD.archived_at IS NULL), archived = archived - (OLD.archived_at IS NOT NULL)
     WHERE organization_id = OLD.organization_id;
END;
CREATE TRIGGER trg_patient_organizations_archive AFTER UPDATE OF archived_at ON patient_organizations
BEGIN
    UPDATE organization_patient_counts
       SET active = active - (OLD.archived_at IS NULL) + (NEW.archived_at IS NULL),
           archived = archived - (OLD.archived_at IS NOT NULL) + (NEW.archived_at IS NOT NULL)
     WHERE organization_id = NEW.organization_id;
END;
