CREATE OR REPLACE FUNCTION cohort_po_counts_insert() RETURNS trigger LANGUAGE plpgsql AS $$
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
CREATE OR REPLACE FUNCTION cohort_po_counts_delete() RETURNS trigger LANGUAGE plpgsql AS $$
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
CREATE OR REPLACE FUNCTION cohort_po_counts_update() RETURNS trigger LANGUAGE plpgsql AS $$
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
CREATE TABLE organization_patient_counts_single AS
SELECT organization_id, SUM(active)::bigint AS active, SUM(archived)::bigint AS archived
  FROM organization_patient_counts GROUP BY organization_id;
DELETE FROM organization_patient_counts;
ALTER TABLE organization_patient_counts DROP CONSTRAINT organization_patient_counts_pkey;
ALTER TABLE organization_patient_counts DROP COLUMN shard;
INSERT INTO organization_patient_counts (organization_id, active, archived)
SELECT organization_id, active, archived FROM organization_patient_counts_single;
DROP TABLE organization_patient_counts_single;
ALTER TABLE organization_patient_counts ADD PRIMARY KEY (organization_id);
