-- Keyword search over patients: one row per normalized word (lower case, accents folded) of a
-- patient's names, e-mail, identifiers and birth date. A query term matches the start of a
-- word through a range scan on (term, patient_id); COLLATE "C" makes that range byte-ordered,
-- as it is in SQLite.
CREATE TABLE patient_search_terms (
    patient_id BIGINT NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
    term TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (patient_id, term)
);
CREATE INDEX idx_patient_search_terms_term ON patient_search_terms(term, patient_id);

-- An organization's list is paged on the link row itself: it carries the patient's sort keys
-- (name folded for case and accents, birth date), so a page a thousand deep is a walk along
-- one covering index. Kept in step by the application on every change of a patient; an
-- unknown birth date is kept as 9999-12-31 so it sorts last on both backends.
ALTER TABLE patient_organizations ADD COLUMN sort_name TEXT COLLATE "C" NOT NULL DEFAULT '';
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

CREATE FUNCTION cohort_organization_counts_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO organization_patient_counts (organization_id) VALUES (NEW.id);
    RETURN NEW;
END $$;
CREATE TRIGGER trg_organizations_counts AFTER INSERT ON organizations
    FOR EACH ROW EXECUTE FUNCTION cohort_organization_counts_row();

-- Statement-level triggers with transition tables: one counter update per statement, not
-- per row, so a bulk insert of thousands of links touches each counter row once.
CREATE FUNCTION cohort_po_counts_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE organization_patient_counts c
       SET active = c.active + n.active, archived = c.archived + n.archived
      FROM (SELECT organization_id,
                   COUNT(*) FILTER (WHERE archived_at IS NULL) AS active,
                   COUNT(*) FILTER (WHERE archived_at IS NOT NULL) AS archived
              FROM new_rows GROUP BY organization_id) n
     WHERE c.organization_id = n.organization_id;
    RETURN NULL;
END $$;
CREATE FUNCTION cohort_po_counts_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE organization_patient_counts c
       SET active = c.active - o.active, archived = c.archived - o.archived
      FROM (SELECT organization_id,
                   COUNT(*) FILTER (WHERE archived_at IS NULL) AS active,
                   COUNT(*) FILTER (WHERE archived_at IS NOT NULL) AS archived
              FROM old_rows GROUP BY organization_id) o
     WHERE c.organization_id = o.organization_id;
    RETURN NULL;
END $$;
CREATE FUNCTION cohort_po_counts_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE organization_patient_counts c
       SET active = c.active + d.active, archived = c.archived + d.archived
      FROM (SELECT organization_id, SUM(active) AS active, SUM(archived) AS archived FROM (
                SELECT organization_id, (archived_at IS NULL)::int AS active, (archived_at IS NOT NULL)::int AS archived FROM new_rows
                UNION ALL
                SELECT organization_id, -(archived_at IS NULL)::int, -(archived_at IS NOT NULL)::int FROM old_rows
            ) x GROUP BY organization_id) d
     WHERE c.organization_id = d.organization_id;
    RETURN NULL;
END $$;
CREATE TRIGGER trg_patient_organizations_counts_insert AFTER INSERT ON patient_organizations
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION cohort_po_counts_insert();
CREATE TRIGGER trg_patient_organizations_counts_delete AFTER DELETE ON patient_organizations
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION cohort_po_counts_delete();
CREATE TRIGGER trg_patient_organizations_counts_update AFTER UPDATE ON patient_organizations
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION cohort_po_counts_update();
