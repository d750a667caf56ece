DROP TRIGGER trg_organizations_counts;
DROP TRIGGER trg_patient_organizations_insert;
DROP TRIGGER trg_patient_organizations_delete;
DROP TRIGGER trg_patient_organizations_archive;
CREATE TABLE organization_patient_counts_old (
    organization_id BIGINT PRIMARY KEY NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    active BIGINT NOT NULL DEFAULT 0,
    archived BIGINT NOT NULL DEFAULT 0
);
INSERT INTO organization_patient_counts_old (organization_id, active, archived)
SELECT organization_id, SUM(active), SUM(archived) FROM organization_patient_counts GROUP BY organization_id;
DROP TABLE organization_patient_counts;
ALTER TABLE organization_patient_counts_old RENAME TO organization_patient_counts;
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
