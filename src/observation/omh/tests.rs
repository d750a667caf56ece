//! Validation and rendering of every supported data type, against the shared examples.
use super::*;
use serde_json::json;

const UUID: &str = "123e4567-e89b-12d3-a456-426614174000";

fn point(code: &str, body: Value) -> Value {
    let parts: Vec<&str> = code.split(':').collect();
    json!({
        "header": {
            "uuid": UUID,
            "schema_id": {"namespace": parts[0], "name": parts[1], "version": parts[2]},
            "source_creation_date_time": "2025-01-01T09:00:00Z",
            "modality": "sensed"
        },
        "body": body
    })
}

fn at() -> Value {
    json!({"date_time": "2025-01-01T08:00:00Z"})
}

fn night() -> Value {
    json!({"time_interval": {
        "start_date_time": "2025-01-01T23:00:00+01:00",
        "end_date_time": "2025-01-02T07:00:00+01:00"
    }})
}

fn qty(value: f64, unit: &str) -> Value {
    json!({"value": value, "unit": unit})
}

/// The smallest body each supported type accepts.
fn minimal_body(code: &str) -> Value {
    match code {
        "omh:blood-glucose:4.0" => {
            json!({"blood_glucose": qty(5.4, "mmol/L"), "effective_time_frame": at()})
        }
        "omh:blood-pressure:4.0" => json!({
            "systolic_blood_pressure": qty(120.0, "mmHg"),
            "diastolic_blood_pressure": qty(80.0, "mmHg"),
            "effective_time_frame": at()
        }),
        "omh:body-temperature:4.0" => {
            json!({"body_temperature": qty(37.0, "C"), "effective_time_frame": at()})
        }
        "omh:heart-rate:2.0" => {
            json!({"heart_rate": qty(72.0, "beats/min"), "effective_time_frame": at()})
        }
        "omh:oxygen-saturation:2.0" => {
            json!({"oxygen_saturation": qty(95.0, "%"), "effective_time_frame": at()})
        }
        "omh:respiratory-rate:2.0" => {
            json!({"respiratory_rate": qty(12.0, "breaths/min"), "effective_time_frame": at()})
        }
        "omh:rr-interval:1.0" => json!({"rr_interval": qty(850.0, "ms")}),
        "omh:body-weight:3.0" => {
            json!({"body_weight": qty(75.2, "kg"), "effective_time_frame": at()})
        }
        "omh:forced-vital-capacity:1.0" => {
            json!({"forced_vital_capacity": qty(4.1, "L"), "effective_time_frame": at()})
        }
        "omh:forced-expiratory-volume-1-second:1.0" => {
            json!({"forced_expiratory_volume_1_second": qty(3.2, "L"), "effective_time_frame": at()})
        }
        "omh:physical-activity:1.2" => json!({"activity_name": "walking"}),
        "omh:step-count:3.0" => {
            json!({"step_count": qty(7412.0, "steps"), "effective_time_frame": night()})
        }
        "omh:sleep-episode:1.1" => json!({"effective_time_frame": night()}),
        "omh:sleep-duration:2.0" => {
            json!({"sleep_duration": qty(492.0, "min"), "effective_time_frame": night()})
        }
        "ieee:sleep-stage-summary:1.0" => json!({
            "sleep_stage_summary": {"total_sleep_time": qty(7.5, "h")},
            "effective_time_frame": night()
        }),
        other => panic!("no minimal body for {other}"),
    }
}

fn minimal(code: &str) -> Value {
    point(code, minimal_body(code))
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("test data")
        .with_timezone(&Utc)
}

fn examples_dir() -> std::path::PathBuf {
    let beside = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/omh-examples"
    ));
    if beside.is_dir() {
        beside.to_path_buf()
    } else {
        std::path::PathBuf::from("/work/shared/data/omh-examples")
    }
}

#[test]
fn every_shared_example_validates_for_the_code_its_header_names() {
    let mut seen = 0;
    for entry in std::fs::read_dir(examples_dir()).expect("the examples directory exists") {
        let path = entry.expect("test data").path();
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("test data"))
            .expect("test data");
        let id = &doc["header"]["schema_id"];
        let code = format!(
            "{}:{}:{}",
            id["namespace"].as_str().expect("test data"),
            id["name"].as_str().expect("test data"),
            id["version"].as_str().expect("test data")
        );
        assert!(is_supported(&code), "{code} from {path:?}");
        let checked = validate(&code, &doc).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        assert_eq!(
            checked.uuid,
            doc["header"]["uuid"].as_str().expect("test data")
        );
        assert_ne!(display_value(&code, &doc), "—", "{path:?}");
        seen += 1;
    }
    assert!(seen >= 7, "expected the 7 shared examples, found {seen}");
}

#[test]
fn an_example_keeps_its_instant_in_utc() {
    let path = examples_dir().join("omh_heart-rate_2-0.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("test data"))
        .expect("test data");
    let checked = validate("omh:heart-rate:2.0", &doc).expect("test data");
    assert_eq!(checked.uuid, "aaaa1234-1a2b-3c4d-5e6f-000000000004");
    assert_eq!(checked.effective_start, utc("2025-01-01T08:04:00Z"));
    assert_eq!(checked.effective_end, None);
}

#[test]
fn each_supported_type_accepts_a_minimal_data_point() {
    assert_eq!(TYPES.len(), 15);
    for kind in TYPES {
        assert!(is_supported(kind.code));
        let result = validate(kind.code, &minimal(kind.code));
        assert!(result.is_ok(), "{}: {:?}", kind.code, result);
    }
    assert!(!is_supported("omh:heart-rate:1.0"));
    assert!(!is_supported("heart-rate"));
}

#[test]
fn an_interval_gives_start_and_end_whichever_two_parts_are_given() {
    let code = "omh:step-count:3.0";
    let with = |interval: Value| {
        let body = json!({"step_count": qty(10.0, "steps"), "effective_time_frame": {"time_interval": interval}});
        validate(code, &point(code, body)).expect("test data")
    };
    let start = utc("2025-01-01T10:00:00Z");
    let end = utc("2025-01-01T11:30:00Z");
    let both = with(
        json!({"start_date_time": "2025-01-01T10:00:00Z", "end_date_time": "2025-01-01T11:30:00Z"}),
    );
    let forward =
        with(json!({"start_date_time": "2025-01-01T10:00:00Z", "duration": qty(90.0, "min")}));
    let backward =
        with(json!({"end_date_time": "2025-01-01T12:30:00+01:00", "duration": qty(1.5, "h")}));
    for checked in [both, forward, backward] {
        assert_eq!(
            (checked.effective_start, checked.effective_end),
            (start, Some(end))
        );
    }
}

#[test]
fn without_a_time_frame_an_rr_interval_takes_the_source_creation_time() {
    let checked =
        validate("omh:rr-interval:1.0", &minimal("omh:rr-interval:1.0")).expect("test data");
    assert_eq!(checked.effective_start, utc("2025-01-01T09:00:00Z"));
}

#[test]
fn an_omh_1_header_with_id_and_creation_time_is_accepted() {
    let mut doc = minimal("omh:heart-rate:2.0");
    doc["header"] = json!({
        "id": UUID,
        "creation_date_time": "2025-01-01T09:00:00Z",
        "schema_id": {"namespace": "omh", "name": "heart-rate", "version": "2.0"},
        "acquisition_provenance": {"source_name": "watch", "modality": "sensed"}
    });
    assert_eq!(
        validate("omh:heart-rate:2.0", &doc)
            .expect("test data")
            .uuid,
        UUID
    );
}

#[test]
fn a_spread_is_not_held_to_the_bounds_of_a_single_reading() {
    let code = "omh:blood-pressure:4.0";
    let mut doc = minimal(code);
    doc["body"]["systolic_blood_pressure"]["value"] = json!(8);
    doc["body"]["diastolic_blood_pressure"]["value"] = json!(5);
    assert_eq!(
        validate(code, &doc).unwrap_err().path,
        "body.systolic_blood_pressure.value"
    );
    doc["body"]["descriptive_statistic"] = json!("standard deviation");
    assert!(validate(code, &doc).is_ok());
    doc["body"]["systolic_blood_pressure"]["value"] = json!(-1);
    assert_eq!(
        validate(code, &doc).unwrap_err().path,
        "body.systolic_blood_pressure.value"
    );
}

/// The minimal point of `code` after `edits`: "pointer = JSON" pairs separated by ";", where
/// a JSON of "-" removes the field and the empty pointer stands for the whole document.
fn edited(code: &str, edits: &str) -> Value {
    let mut doc = minimal(code);
    for edit in edits.split(';').filter(|e| !e.trim().is_empty()) {
        let (pointer, json) = edit.split_once('=').expect("pointer = JSON");
        let (pointer, json) = (pointer.trim(), json.trim());
        let (parent, key) = pointer.rsplit_once('/').unwrap_or(("", ""));
        match (json, doc.pointer_mut(parent).expect("test data")) {
            (_, whole) if pointer.is_empty() => {
                *whole = serde_json::from_str(json).expect("test data")
            }
            ("-", Value::Object(map)) => assert!(map.remove(key).is_some(), "{pointer}"),
            (json, Value::Object(map)) => {
                map.insert(
                    key.to_string(),
                    serde_json::from_str(json).expect("test data"),
                );
            }
            _ => panic!("cannot edit {pointer}"),
        }
    }
    doc
}

// case | data type | edits to its minimal point | path of the error
const INVALID: &str = r#"
    not an object            | omh:heart-rate:2.0 | = [1, 2] | $
    missing header           | omh:heart-rate:2.0 | /header = - | header
    header not an object     | omh:heart-rate:2.0 | /header = "h" | header
    missing uuid             | omh:heart-rate:2.0 | /header/uuid = - | header.uuid
    bad uuid                 | omh:heart-rate:2.0 | /header/uuid = "abc-123" | header.uuid
    uuid with a non-hex digit| omh:heart-rate:2.0 | /header/uuid = "g23e4567-e89b-12d3-a456-426614174000" | header.uuid
    empty uuid               | omh:heart-rate:2.0 | /header/uuid = "" | header.uuid
    bad id                   | omh:heart-rate:2.0 | /header/uuid = -; /header/id = 42 | header.id
    missing schema_id        | omh:heart-rate:2.0 | /header/schema_id = - | header.schema_id
    namespace mismatch       | omh:heart-rate:2.0 | /header/schema_id/namespace = "ieee" | header.schema_id.namespace
    schema name mismatch     | omh:heart-rate:2.0 | /header/schema_id/name = "blood-pressure" | header.schema_id.name
    major version mismatch   | omh:heart-rate:2.0 | /header/schema_id/version = "1.1" | header.schema_id.version
    version as a number      | omh:heart-rate:2.0 | /header/schema_id/version = 2.0 | header.schema_id.version
    header time, no offset   | omh:heart-rate:2.0 | /header/source_creation_date_time = "2025-01-01T09:00:00" | header.source_creation_date_time
    bad creation time        | omh:heart-rate:2.0 | /header/creation_date_time = "yesterday" | header.creation_date_time
    unknown modality         | omh:heart-rate:2.0 | /header/modality = "guessed" | header.modality
    bad provenance modality  | omh:heart-rate:2.0 | /header/acquisition_provenance = {"modality": "x"} | header.acquisition_provenance.modality
    missing body             | omh:heart-rate:2.0 | /body = - | body
    missing heart rate       | omh:heart-rate:2.0 | /body/heart_rate = - | body.heart_rate
    heart rate a number only | omh:heart-rate:2.0 | /body/heart_rate = 72 | body.heart_rate
    missing diastolic        | omh:blood-pressure:4.0 | /body/diastolic_blood_pressure = - | body.diastolic_blood_pressure
    systolic as a string     | omh:blood-pressure:4.0 | /body/systolic_blood_pressure/value = "120" | body.systolic_blood_pressure.value
    systolic too high        | omh:blood-pressure:4.0 | /body/systolic_blood_pressure/value = 301 | body.systolic_blood_pressure.value
    diastolic too low        | omh:blood-pressure:4.0 | /body/diastolic_blood_pressure/value = 9 | body.diastolic_blood_pressure.value
    unit not in enum         | omh:heart-rate:2.0 | /body/heart_rate/unit = "bpm" | body.heart_rate.unit
    missing unit             | omh:heart-rate:2.0 | /body/heart_rate/unit = - | body.heart_rate.unit
    missing value            | omh:heart-rate:2.0 | /body/heart_rate/value = - | body.heart_rate.value
    heart rate out of range  | omh:heart-rate:2.0 | /body/heart_rate/value = 401 | body.heart_rate.value
    glucose out of range     | omh:blood-glucose:4.0 | /body/blood_glucose/value = 200 | body.blood_glucose.value
    temperature in C as F    | omh:body-temperature:4.0 | /body/body_temperature/value = 98.6 | body.body_temperature.value
    oxygen above 100 %       | omh:oxygen-saturation:2.0 | /body/oxygen_saturation/value = 101 | body.oxygen_saturation.value
    respiratory rate < 0     | omh:respiratory-rate:2.0 | /body/respiratory_rate/value = -1 | body.respiratory_rate.value
    rr interval too long     | omh:rr-interval:1.0 | /body/rr_interval/value = 10001 | body.rr_interval.value
    rr interval in seconds   | omh:rr-interval:1.0 | /body/rr_interval/unit = "sec" | body.rr_interval.unit
    weight in lb too high    | omh:body-weight:3.0 | /body/body_weight = {"value": 2000, "unit": "lb"} | body.body_weight.value
    FVC too high             | omh:forced-vital-capacity:1.0 | /body/forced_vital_capacity/value = 11 | body.forced_vital_capacity.value
    FEV1 in mL               | omh:forced-expiratory-volume-1-second:1.0 | /body/forced_expiratory_volume_1_second/unit = "mL" | body.forced_expiratory_volume_1_second.unit
    negative step count      | omh:step-count:3.0 | /body/step_count/value = -5 | body.step_count.value
    fractional step count    | omh:step-count:3.0 | /body/step_count/value = 10.5 | body.step_count.value
    steps at an instant      | omh:step-count:3.0 | /body/effective_time_frame = {"date_time": "2025-01-01T08:00:00Z"} | body.effective_time_frame.time_interval
    interval end before start| omh:step-count:3.0 | /body/effective_time_frame/time_interval/end_date_time = "2025-01-01T22:00:00+01:00" | body.effective_time_frame.time_interval.end_date_time
    interval with all three  | omh:step-count:3.0 | /body/effective_time_frame/time_interval/duration = {"value": 8, "unit": "h"} | body.effective_time_frame.time_interval
    interval with start only | omh:step-count:3.0 | /body/effective_time_frame/time_interval/end_date_time = - | body.effective_time_frame.time_interval.end_date_time
    interval by part of day  | omh:step-count:3.0 | /body/effective_time_frame/time_interval = {"date": "2025-01-01", "part_of_day": "morning"} | body.effective_time_frame.time_interval
    negative duration        | omh:step-count:3.0 | /body/effective_time_frame/time_interval/end_date_time = -; /body/effective_time_frame/time_interval/duration = {"value": -1, "unit": "h"} | body.effective_time_frame.time_interval.duration.value
    effective_time_frame missing | omh:heart-rate:2.0 | /body/effective_time_frame = - | body.effective_time_frame
    date-time without offset | omh:heart-rate:2.0 | /body/effective_time_frame/date_time = "2025-01-01T08:00:00" | body.effective_time_frame.date_time
    date_time and interval   | omh:heart-rate:2.0 | /body/effective_time_frame/time_interval = {"start_date_time": "2025-01-01T08:00:00Z"} | body.effective_time_frame
    empty time frame         | omh:heart-rate:2.0 | /body/effective_time_frame = {} | body.effective_time_frame
    unknown body site        | omh:body-temperature:4.0 | /body/measurement_location = "ear" | body.measurement_location
    unknown statistic        | omh:heart-rate:2.0 | /body/descriptive_statistic = "mode" | body.descriptive_statistic
    activity without a name  | omh:physical-activity:1.2 | /body/activity_name = " " | body.activity_name
    untimed, no header time  | omh:physical-activity:1.2 | /header/source_creation_date_time = - | body.effective_time_frame
    distance in miles, huge  | omh:physical-activity:1.2 | /body/distance = {"value": 700, "unit": "mi"} | body.distance.value
    MET value as text        | omh:physical-activity:1.2 | /body/met_value = "5" | body.met_value
    awakenings as text       | omh:sleep-episode:1.1 | /body/number_of_awakenings = "3" | body.number_of_awakenings
    main sleep as text       | omh:sleep-episode:1.1 | /body/is_main_sleep = "yes" | body.is_main_sleep
    sleep over two days      | omh:sleep-duration:2.0 | /body/sleep_duration = {"value": 49, "unit": "h"} | body.sleep_duration.value
    sleep duration in days   | omh:sleep-duration:2.0 | /body/sleep_duration = {"value": 1, "unit": "d"} | body.sleep_duration.unit
    missing total sleep time | ieee:sleep-stage-summary:1.0 | /body/sleep_stage_summary/total_sleep_time = - | body.sleep_stage_summary.total_sleep_time
    stage percentage > 100   | ieee:sleep-stage-summary:1.0 | /body/sleep_stage_summary/rem_sleep_percentage = {"value": 120, "unit": "%"} | body.sleep_stage_summary.rem_sleep_percentage.value
    unknown sleep stage      | ieee:sleep-stage-summary:1.0 | /body/sleep_stage_episodes = [{"sleep_stage_state": "dreaming"}] | body.sleep_stage_episodes[0].sleep_stage_state
    stage at an instant      | ieee:sleep-stage-summary:1.0 | /body/sleep_stage_episodes = [{"sleep_stage_state": "Awake", "sleep_stage_time_frame": {"date_time": "2025-01-01T08:00:00Z"}}] | body.sleep_stage_episodes[0].sleep_stage_time_frame.time_interval
"#;

#[test]
fn invalid_points_are_refused_at_the_field_to_fix() {
    let rows: Vec<&str> = INVALID.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(rows.len() > 50);
    for row in rows {
        let [case, code, edits, path] = row.split('|').map(str::trim).collect::<Vec<_>>()[..]
        else {
            panic!("bad row {row}");
        };
        let doc = edited(code, edits);
        let error = validate(code, &doc).expect_err(case);
        assert_eq!(error.path, path, "{case}: {error}");
        assert!(
            !error.message.is_empty() && !error.message.ends_with('.'),
            "{case}: {error}"
        );
    }
}

#[test]
fn an_unknown_code_is_refused_at_code() {
    let error = validate("omh:blood-oxygen:9.9", &minimal("omh:heart-rate:2.0")).unwrap_err();
    assert_eq!(error.path, "code");
    assert!(error.message.contains("omh:heart-rate:2.0"), "{error}");
}

#[test]
fn the_header_is_checked_before_the_body() {
    let mut doc = minimal("omh:heart-rate:2.0");
    doc["header"]["uuid"] = json!("nope");
    doc["body"]["heart_rate"]["unit"] = json!("bpm");
    assert_eq!(
        validate("omh:heart-rate:2.0", &doc).unwrap_err().path,
        "header.uuid"
    );
}

#[test]
fn messages_say_what_to_fix_in_plain_words() {
    let message = |code: &str, edits: &str| validate(code, &edited(code, edits)).unwrap_err();
    let error = message("omh:heart-rate:2.0", r#"/body/heart_rate/unit = "bpm""#);
    assert_eq!(error.to_string(), "body.heart_rate.unit must be beats/min");
    let cases = [
        (
            "omh:blood-pressure:4.0",
            "/body/systolic_blood_pressure/value = 10",
            "must be a number between 20 and 300 (mmHg)",
        ),
        (
            "omh:blood-glucose:4.0",
            r#"/body/blood_glucose/unit = "g/L""#,
            "must be one of mg/dL, mmol/L",
        ),
        (
            "omh:blood-glucose:4.0",
            "/body/blood_glucose = -",
            "is required",
        ),
        (
            "omh:body-weight:3.0",
            "/body/body_weight/value = 0.1",
            "must be a number between 0.2 and 700 (kg)",
        ),
        (
            "omh:step-count:3.0",
            "/body/step_count/value = -5",
            "must be a whole number between 0 and 10000000 (steps)",
        ),
        (
            "omh:heart-rate:2.0",
            r#"/body/heart_rate/value = "72""#,
            "must be a number, not text in quotes",
        ),
    ];
    for (code, edits, expected) in cases {
        assert_eq!(message(code, edits).message, expected, "{code} {edits}");
    }
}

// data type | body | display value
const SHOWN: &str = r#"
    omh:blood-pressure:4.0 | {"systolic_blood_pressure": {"value": 120, "unit": "mmHg"}, "diastolic_blood_pressure": {"value": 80, "unit": "mmHg"}} | 120/80 mmHg
    omh:step-count:3.0 | {"step_count": {"value": 7412, "unit": "steps"}} | 7,412 steps
    omh:heart-rate:2.0 | {"heart_rate": {"value": 72, "unit": "beats/min"}} | 72 beats/min
    omh:heart-rate:2.0 | {"heart_rate": {"value": 67.456, "unit": "beats/min"}} | 67.46 beats/min
    omh:blood-glucose:4.0 | {"blood_glucose": {"value": 5.4, "unit": "mmol/L"}} | 5.4 mmol/L
    omh:sleep-duration:2.0 | {"sleep_duration": {"value": 492, "unit": "min"}} | 8 h 12 min
    omh:oxygen-saturation:2.0 | {"oxygen_saturation": {"value": 95.0, "unit": "%"}} | 95 %
    omh:body-weight:3.0 | {"body_weight": {"value": 75.2, "unit": "kg"}} | 75.2 kg
    omh:body-temperature:4.0 | {"body_temperature": {"value": 37, "unit": "C"}} | 37 °C
    omh:body-temperature:4.0 | {"body_temperature": {"value": 98.6, "unit": "F"}} | 98.6 °F
    omh:rr-interval:1.0 | {"rr_interval": {"value": 850, "unit": "ms"}} | 850 ms
    ieee:sleep-stage-summary:1.0 | {"sleep_stage_summary": {"total_sleep_time": {"value": 7.5, "unit": "h"}}} | 7 h 30 min
    omh:sleep-episode:1.1 | {"effective_time_frame": {"time_interval": {"start_date_time": "2025-01-01T23:00:00Z", "end_date_time": "2025-01-02T07:00:00Z"}}} | 8 h
    omh:physical-activity:1.2 | {"activity_name": "walking", "distance": {"value": 5, "unit": "km"}, "kcal_burned": {"value": 250, "unit": "kcal"}, "effective_time_frame": {"time_interval": {"start_date_time": "2025-01-01T10:00:00Z", "duration": {"value": 45, "unit": "min"}}}} | walking, 5 km, 45 min, 250 kcal
    omh:heart-rate:2.0 | {} | —
    omh:nothing:1.0 | {"heart_rate": {"value": 72, "unit": "beats/min"}} | —
"#;

#[test]
fn display_values_read_like_a_table_cell() {
    for row in SHOWN.lines().filter(|l| !l.trim().is_empty()) {
        let [code, body, expected] = row.split('|').map(str::trim).collect::<Vec<_>>()[..] else {
            panic!("bad row {row}");
        };
        let doc = point(code, serde_json::from_str(body).expect("test data"));
        assert_eq!(display_value(code, &doc), expected, "{code} {body}");
    }
    assert_eq!(display_value("omh:heart-rate:2.0", &json!(null)), "—");
}

#[test]
fn numbers_print_with_at_most_two_decimals_and_grouped_thousands() {
    assert_eq!(human(1_234_567.891), "1,234,567.89");
    assert_eq!(human(72.0), "72");
    assert_eq!(human(0.5), "0.5");
    assert_eq!(human(999.999), "1,000");
    assert_eq!(human(-0.001), "0");
    assert_eq!(human(-1234.5), "-1,234.5");
    assert_eq!(clock(30.0), "30 s");
    assert_eq!(clock(45.0 * 60.0), "45 min");
    assert_eq!(clock(29_520.0), "8 h 12 min");
    assert_eq!(plain(0.2 / 1000.0), "0.0002");
}

#[test]
fn readings_come_in_a_stable_order_per_type() {
    let bp = readings("omh:blood-pressure:4.0", &minimal("omh:blood-pressure:4.0"));
    assert_eq!(
        bp,
        vec![
            Reading {
                name: "systolic_blood_pressure",
                value: 120.0,
                unit: "mmHg".into()
            },
            Reading {
                name: "diastolic_blood_pressure",
                value: 80.0,
                unit: "mmHg".into()
            },
        ]
    );
    let code = "omh:physical-activity:1.2";
    let walk = point(
        code,
        json!({
            "activity_name": "walking",
            "kcal_burned": qty(250.0, "kcal"),
            "distance": qty(5.0, "km"),
            "effective_time_frame": night()
        }),
    );
    let names: Vec<(&str, f64)> = readings(code, &walk)
        .iter()
        .map(|r| (r.name, r.value))
        .collect();
    assert_eq!(
        names,
        vec![
            ("distance", 5.0),
            ("duration", 480.0),
            ("kcal_burned", 250.0)
        ]
    );
    let code = "ieee:sleep-stage-summary:1.0";
    let night_stages = point(
        code,
        json!({
            "sleep_stage_summary": {
                "total_sleep_time": qty(420.0, "min"),
                "awake_duration": qty(30.0, "min"),
                "deep_sleep_duration": qty(90.0, "min"),
                "light_sleep_duration": qty(240.0, "min"),
                "rem_sleep_duration": qty(90.0, "min")
            },
            "effective_time_frame": night()
        }),
    );
    assert!(validate(code, &night_stages).is_ok());
    let names: Vec<&str> = readings(code, &night_stages)
        .iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(
        names,
        [
            "total_sleep_time",
            "rem_sleep_duration",
            "light_sleep_duration",
            "deep_sleep_duration",
            "awake_duration"
        ]
    );
    assert!(readings("omh:sleep-episode:1.1", &json!({"body": {}})).is_empty());
    assert!(readings("nope", &minimal("omh:heart-rate:2.0")).is_empty());
}

#[test]
fn value_columns_follow_the_readings_and_every_reading_has_a_label() {
    assert_eq!(
        value_columns("omh:blood-pressure:4.0"),
        [
            "systolic_blood_pressure_value",
            "systolic_blood_pressure_unit",
            "diastolic_blood_pressure_value",
            "diastolic_blood_pressure_unit"
        ]
    );
    assert!(value_columns("omh:unknown:1.0").is_empty());
    for kind in TYPES {
        let names: Vec<&str> = kind
            .sources
            .iter()
            .map(|s| match *s {
                Source::Value { name, .. } => name,
                Source::IntervalLength => "duration",
            })
            .collect();
        let expected: Vec<String> = names
            .iter()
            .flat_map(|n| [format!("{n}_value"), format!("{n}_unit")])
            .collect();
        assert_eq!(kind.columns, expected, "{}", kind.code);
        for name in names {
            assert_ne!(reading_label(name), "Value", "{name}");
        }
    }
    assert_eq!(reading_label("systolic_blood_pressure"), "Systolic");
    assert_eq!(reading_label("heart_rate"), "Heart rate");
}

/// Every variant of `doc` with one field removed or replaced by a value of another type.
fn mutations(doc: &Value) -> Vec<Value> {
    let replacements = [
        json!(null),
        json!("x"),
        json!(-1.5),
        json!(1e308),
        json!([]),
        json!([1]),
        json!({}),
    ];
    let mut out = Vec::new();
    let mut pointers = Vec::new();
    collect_pointers(doc, String::new(), &mut pointers);
    for pointer in pointers {
        for replacement in &replacements {
            let mut changed = doc.clone();
            *changed.pointer_mut(&pointer).expect("test data") = replacement.clone();
            out.push(changed);
        }
        if let Some((parent, key)) = pointer.rsplit_once('/') {
            let mut changed = doc.clone();
            match changed.pointer_mut(parent).expect("test data") {
                Value::Object(map) => {
                    map.remove(key);
                }
                Value::Array(items) => {
                    items.remove(key.parse::<usize>().expect("test data"));
                }
                _ => {}
            }
            out.push(changed);
        }
    }
    out
}

fn collect_pointers(value: &Value, here: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                collect_pointers(child, format!("{here}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                collect_pointers(child, format!("{here}/{i}"), out);
            }
        }
        _ => {}
    }
    if !here.is_empty() {
        out.push(here);
    }
}

#[test]
fn no_mutation_of_a_data_point_makes_any_function_panic() {
    let mut docs: Vec<(String, Value)> = TYPES
        .iter()
        .map(|k| (k.code.to_string(), minimal(k.code)))
        .collect();
    docs.push((
        "ieee:sleep-stage-summary:1.0".into(),
        point("ieee:sleep-stage-summary:1.0", json!({
            "sleep_stage_summary": {"total_sleep_time": qty(7.0, "h"), "rem_sleep_episode_count": 3},
            "sleep_stage_episodes": [{"sleep_stage_state": "Awake", "sleep_stage_time_frame": night()}],
            "effective_time_frame": {"time_interval": {"end_date_time": "2025-01-02T07:00:00Z", "duration": qty(8.0, "h")}},
            "is_main_sleep": true
        })),
    ));
    for entry in std::fs::read_dir(examples_dir()).expect("test data") {
        let doc: Value = serde_json::from_str(
            &std::fs::read_to_string(entry.expect("test data").path()).expect("test data"),
        )
        .expect("test data");
        let id = &doc["header"]["schema_id"];
        let code = format!("{}:{}:{}", id["namespace"], id["name"], id["version"]).replace('"', "");
        docs.push((code, doc));
    }
    let mut checked = 0;
    for (code, doc) in &docs {
        for changed in mutations(doc) {
            for code in [code.as_str(), "omh:physical-activity:1.2", "nope"] {
                let _ = validate(code, &changed);
                let _ = readings(code, &changed);
                assert!(!display_value(code, &changed).is_empty());
                checked += 1;
            }
        }
    }
    assert!(checked > 1000, "only {checked} mutations checked");
}
