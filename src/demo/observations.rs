//! Demo observations: plausible readings of the demo study's data types, uploaded over a
//! year by the patients who consented to them. For trying the Observations tab out and for
//! the benchmark's ten million rows. `cohort seed-demo --observations N`.

use diesel::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::db::schema::{codeable_concepts, consents};
use crate::db::DbConnection;
use crate::error::AppError;
use crate::observation::model::NewObservation;
use crate::util::now;

/// Rows per transaction: big enough to amortise the commit, small enough to show progress.
const BATCH: usize = 20_000;

/// One data point of `code` at `t` (seconds since 1970), or None for a type this does not fake.
pub fn data_point(rng: &mut StdRng, code: &str, uuid: &str, t: i64) -> Option<String> {
    let at = chrono::DateTime::from_timestamp(t, 0)?;
    let when = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (name, version, body) = match code {
        "omh:heart-rate:2.0" => (
            "heart-rate",
            "2.0",
            json!({"heart_rate": {"value": rng.gen_range(52..110), "unit": "beats/min"},
                   "effective_time_frame": {"date_time": when}}),
        ),
        "omh:blood-pressure:4.0" => (
            "blood-pressure",
            "4.0",
            json!({"systolic_blood_pressure": {"value": rng.gen_range(100..160), "unit": "mmHg"},
                   "diastolic_blood_pressure": {"value": rng.gen_range(60..100), "unit": "mmHg"},
                   "effective_time_frame": {"date_time": when}}),
        ),
        "omh:blood-glucose:4.0" => (
            "blood-glucose",
            "4.0",
            json!({"blood_glucose": {"value": rng.gen_range(70..180), "unit": "mg/dL"},
                   "effective_time_frame": {"date_time": when}}),
        ),
        "omh:step-count:3.0" => {
            let end = (at + chrono::Duration::hours(1))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            (
                "step-count",
                "3.0",
                json!({"step_count": {"value": rng.gen_range(0..4000), "unit": "steps"},
                       "effective_time_frame": {"time_interval": {"start_date_time": when, "end_date_time": end}}}),
            )
        }
        _ => return None,
    };
    let doc = json!({
        "header": {
            "uuid": uuid,
            "schema_id": {"namespace": "omh", "name": name, "version": version},
            "source_creation_date_time": when,
            "modality": "sensed",
        },
        "body": body,
    });
    Some(doc.to_string())
}

/// A time-ordered UUID (version 7 layout: milliseconds first), as many devices now make:
/// consecutive points sort together, so the identifier index grows at its end.
fn uuid(rng: &mut StdRng, millis: i64) -> String {
    let a: u128 = ((millis as u128 & 0xffff_ffff_ffff) << 80)
        | (0x7 << 76)
        | (rng.gen::<u128>() & ((1u128 << 76) - 1) & !(0x3 << 62))
        | (0x2 << 62);
    let h = format!("{a:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Adds `count` observations, spread over the year before now, from the (patient, data type)
/// pairs that consented in `study_id`. Returns seconds taken.
pub fn seed(
    conn: &mut DbConnection,
    study_id: i64,
    count: i64,
    mut progress: impl FnMut(i64),
) -> Result<f64, AppError> {
    let started = std::time::Instant::now();
    let pairs: Vec<(i64, i64, String)> = consents::table
        .inner_join(codeable_concepts::table)
        .filter(consents::study_id.eq(study_id))
        .filter(consents::consented.eq(true))
        .select((
            consents::patient_id,
            codeable_concepts::id,
            codeable_concepts::coding_code,
        ))
        .load::<(i64, i64, String)>(conn)?
        .into_iter()
        .filter(|(_, _, code)| {
            matches!(
                code.as_str(),
                "omh:heart-rate:2.0"
                    | "omh:blood-pressure:4.0"
                    | "omh:blood-glucose:4.0"
                    | "omh:step-count:3.0"
            )
        })
        .collect();
    if pairs.is_empty() {
        return Err(AppError::BadRequest(
            "The study has no consent to heart rate, blood pressure, blood glucose or steps to upload for.".into(),
        ));
    }
    let source = match crate::data_source::repo::find_by_name(conn, "Demo Watch")? {
        Some(d) => d.id,
        None => crate::data_source::repo::insert(conn, "Demo Watch", "personal_device", &[])?,
    };
    let mut rng = StdRng::seed_from_u64(study_id as u64 * 7919 + count as u64);
    let end = now().and_utc().timestamp();
    let span = 365 * 86_400_i64;
    // Loading millions of rows into seven indexes at once writes every index page again and
    // again; building the indexes afterwards sorts once.
    let indexes = super::repo::drop_indexes(conn, "observations")?;
    // Twenty thousand new rows a transaction: spilling their pages to the WAL half-way
    // through would cost more than the inserts.
    let loaded = crate::db::with_sqlite_cache(conn, 262_144, |conn| {
        let mut done = 0_i64;
        while done < count {
            let n = (BATCH as i64).min(count - done);
            let at = now();
            let mut rows = Vec::with_capacity(n as usize);
            for i in 0..n {
                // In time order, so the time-ordered indexes grow at their end.
                let t = end - span + (done + i) * span / count.max(1);
                let (patient_id, concept, code) = &pairs[rng.gen_range(0..pairs.len())];
                let id = uuid(&mut rng, t * 1000);
                let Some(doc) = data_point(&mut rng, code, &id, t) else {
                    continue;
                };
                let start = chrono::DateTime::from_timestamp(t, 0)
                    .unwrap_or_default()
                    .naive_utc();
                rows.push(NewObservation {
                    patient_id: *patient_id,
                    codeable_concept_id: *concept,
                    data_source_id: Some(source),
                    status: "final".into(),
                    identifier_system: crate::observation::UUID_SYSTEM.into(),
                    identifier_value: format!("urn:uuid:{id}"),
                    effective_start: start,
                    effective_end: (code == "omh:step-count:3.0")
                        .then(|| start + chrono::Duration::hours(1)),
                    omh_data: doc,
                    at,
                });
            }
            conn.transaction::<_, AppError, _>(|c| {
                crate::observation::repo::insert_many(c, &rows)?;
                Ok(())
            })?;
            done += n;
            progress(done);
        }
        Ok(())
    });
    // The indexes come back whatever happened, or every list would crawl.
    super::repo::create_indexes(conn, &indexes)?;
    loaded?;
    super::repo::after_bulk(conn)?;
    Ok(started.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fake_data_point_is_valid() {
        let mut rng = StdRng::seed_from_u64(1);
        for code in [
            "omh:heart-rate:2.0",
            "omh:blood-pressure:4.0",
            "omh:blood-glucose:4.0",
            "omh:step-count:3.0",
        ] {
            for _ in 0..50 {
                let id = uuid(&mut rng, 1_700_000_000_000);
                let doc = data_point(&mut rng, code, &id, 1_700_000_000).expect("a point");
                let v: serde_json::Value = serde_json::from_str(&doc).expect("json");
                let checked = crate::observation::omh::validate(code, &v)
                    .unwrap_or_else(|e| panic!("{code}: {e}"));
                assert_eq!(checked.uuid, id);
                assert_eq!(checked.effective_start.timestamp(), 1_700_000_000);
            }
        }
        assert!(data_point(&mut rng, "omh:body-weight:3.0", "x", 0).is_none());
    }
}
