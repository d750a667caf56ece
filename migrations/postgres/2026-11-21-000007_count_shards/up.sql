-- An organization's patient count in up to 64 rows (shards) instead of one. With one row,
-- every transaction that adds a patient to the organization updated it and held its lock
-- until commit, so concurrent creates, on any number of instances, ran one at a time. Each
-- statement now adds its change to a shard picked at random, and a read sums the shards.
ALTER TABLE organization_patient_counts ADD COLUMN shard INTEGER NOT NULL DEFAULT 0;
ALTER TABLE organization_patient_counts DROP CONSTRAINT organization_patient_counts_pkey;
ALTER TABLE organization_patient_counts ADD PRIMARY KEY (organization_id, shard);

CREATE OR REPLACE FUNCTION cohort_po_counts_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- An organization that is gone in this transaction has no count left to change.
    INSERT INTO organization_patient_counts AS c (organization_id, shard, active, archived)
    SELECT d.organization_id, floor(random() * 64)::int, d.active, d.archived
      FROM (SELECT organization_id,
                   COUNT(*) FILTER (WHERE archived_at IS NULL) AS active,
                   COUNT(*) FILTER (WHERE archived_at IS NOT NULL) AS archived
              FROM new_rows GROUP BY organization_id) d
     WHERE (d.active <> 0 OR d.archived <> 0)
       AND EXISTS (SELECT 1 FROM organizations o WHERE o.id = d.organization_id)
    ON CONFLICT (organization_id, shard) DO UPDATE
       SET active = c.active + EXCLUDED.active, archived = c.archived + EXCLUDED.archived;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION cohort_po_counts_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- An organization that is gone in this transaction has no count left to change.
    INSERT INTO organization_patient_counts AS c (organization_id, shard, active, archived)
    SELECT d.organization_id, floor(random() * 64)::int, d.active, d.archived
      FROM (SELECT organization_id,
                   -COUNT(*) FILTER (WHERE archived_at IS NULL) AS active,
                   -COUNT(*) FILTER (WHERE archived_at IS NOT NULL) AS archived
              FROM old_rows GROUP BY organization_id) d
     WHERE (d.active <> 0 OR d.archived <> 0)
       AND EXISTS (SELECT 1 FROM organizations o WHERE o.id = d.organization_id)
    ON CONFLICT (organization_id, shard) DO UPDATE
       SET active = c.active + EXCLUDED.active, archived = c.archived + EXCLUDED.archived;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION cohort_po_counts_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- An organization that is gone in this transaction has no count left to change.
    INSERT INTO organization_patient_counts AS c (organization_id, shard, active, archived)
    SELECT d.organization_id, floor(random() * 64)::int, d.active, d.archived
      FROM (SELECT organization_id, SUM(active)::bigint AS active, SUM(archived)::bigint AS archived FROM (
                SELECT organization_id, (archived_at IS NULL)::int AS active, (archived_at IS NOT NULL)::int AS archived FROM new_rows
                UNION ALL
                SELECT organization_id, -(archived_at IS NULL)::int, -(archived_at IS NOT NULL)::int FROM old_rows
            ) x GROUP BY organization_id) d
     WHERE (d.active <> 0 OR d.archived <> 0)
       AND EXISTS (SELECT 1 FROM organizations o WHERE o.id = d.organization_id)
    ON CONFLICT (organization_id, shard) DO UPDATE
       SET active = c.active + EXCLUDED.active, archived = c.archived + EXCLUDED.archived;
    RETURN NULL;
END $$;
