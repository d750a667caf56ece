-- The count table gains the shard column PostgreSQL uses to spread concurrent updates (see
-- the PostgreSQL migration). SQLite has one writer at a time, so it keeps one row: shard 0.
DROP TRIGGER trg_organizations_counts;
DROP TRIGGER trg_patient_organizations_insert;
DROP TRIGGER trg_patient_organizations_delete;
DROP TRIGGER trg_patient_organizations_archive;
CREATE TABLE organization_patient_counts_new (
    organization_id BIGINT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    active BIGINT NOT NULL DEFAULT 0,
    archived BIGINT NOT NULL DEFAULT 0,
    shard INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (organization_id, shard)
);
INSERT INTO organization_patient_counts_new (organization_id, active, archived, shard)
SELECT organization_id, active, archived, 0 FROM organization_patient_counts;
DROP TABLE organization_patient_counts;
ALTER TABLE organization_patient_counts_new RENAME TO organization_patient_counts;

CREATE TRIGGER trg_organizations_counts AFTER INSERT ON organizations
BEGIN
    INSERT INTO organization_patient_counts (organization_id, shard) VALUES (NEW.id, 0);
END;
CREATE TRIGGER trg_patient_organizations_insert AFTER INSERT ON patient_organizations
BEGIN
    UPDATE organization_patient_counts
       SET active = active + (NEW.archived_at IS NULL), archived = archived + (NEW.archived_at IS NOT NULL)
     WHERE organization_id = NEW.organization_id AND shard = 0;
END;
CREATE TRIGGER trg_patient_organizations_delete AFTER DELETE ON patient_organizations
BEGIN
    UPDATE organization_patient_counts
       SET active = active - (OLD.archived_at IS NULL), archived = archived - (OLD.archived_at IS NOT NULL)
     WHERE organization_id = OLD.organization_id AND shard = 0;
END;
CREATE TRIGGER trg_patient_organizations_archive AFTER UPDATE OF archived_at ON patient_organizations
BEGIN
    UPDATE organization_patient_counts
       SET active = active - (OLD.archived_at IS NULL) + (NEW.archived_at IS NULL),
           archived = archived - (OLD.archived_at IS NOT NULL) + (NEW.archived_at IS NOT NULL)
     WHERE organization_id = NEW.organization_id AND shard = 0;
END;
