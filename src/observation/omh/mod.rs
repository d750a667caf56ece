//! Open mHealth data points: checks a point against the shape of its data type, renders its values.
//!
//! Each supported data type's body is described below as its fields in the order its JSON schema
//! lists them (Open mHealth schemas at ref c64fca0, IEEE 1752 at ref 3814820). Validation walks the
//! document shape, then the header, then those fields, and reports the first problem, so the same
//! document always gets the same answer. Every requested schema version exists in those refs.
//!
//! Headers are accepted in both shapes found in the wild: the IEEE 1752 header (`uuid`,
//! `source_creation_date_time`, `modality`) and the older OMH 1.x header (`id`,
//! `creation_date_time`, `acquisition_provenance`). Neither date-time is required here; Cohort
//! records its own receipt time.

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value};

/// A data point that passed validation: what Cohort stores next to the raw JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// `header.uuid`, or `header.id` when the header has the OMH 1.x shape.
    pub uuid: String,
    /// The `date_time` of the effective time frame, or the start of its interval.
    pub effective_start: DateTime<Utc>,
    /// The end of the effective time interval; `None` for a point in time.
    pub effective_end: Option<DateTime<Utc>>,
}

/// Why a data point is invalid: the JSON path of the bad field and, in plain words, what to fix.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    pub path: String,
    pub message: String,
}

impl Invalid {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Invalid {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.path, self.message)
    }
}

impl std::error::Error for Invalid {}

/// One numeric reading of a data point, for tables, charts and CSV.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub name: &'static str,
    pub value: f64,
    pub unit: String,
}

// Plausible bounds. A value outside them is far likelier a unit mix-up or a device fault than a
// real reading, so the point is refused and the message names the bounds in the sender's unit.
//
//   field                              unit(s)                     accepted
//   blood_glucose                      mg/dL | mmol/L              1 – 2000 | 0.1 – 110
//   systolic_blood_pressure            mmHg                        20 – 300
//   diastolic_blood_pressure           mmHg                        10 – 250
//   body_temperature                   C | F | K                   25 – 45 | 77 – 113 | 298.15 – 318.15
//   heart_rate                         beats/min                   1 – 400
//   oxygen_saturation                  %                           0 – 100
//   supplemental_oxygen_flow_rate      L/min                       0 – 60
//   respiratory_rate                   breaths/min                 0 – 200
//   rr_interval                        ms (its schema's only unit) 1 – 10000
//   body_weight                        any mass unit               0.2 – 700 kg, converted
//   forced_vital_capacity              L                           0.1 – 10
//   forced_expiratory_volume_1_second  L                           0.1 – 8
//   distance (physical activity)       any length unit             0 – 1000 km, converted
//   kcal_burned                        kcal                        0 – 20000
//   met_value                          (plain number)              0 – 30
//   step_count                         steps                       whole, 0 – 10,000,000
//   sleep durations and latencies      duration units              0 – 48 h, converted
//   sleep percentages                  %                           0 – 100
//   counts (awakenings, episodes)      (integer)                   whole, 0 – 1000
//   time_interval.duration             duration units              0 – 100 yr, converted
//
// A value that is a spread, a count or a total (descriptive_statistic "standard deviation",
// "sum", ...) is not on the scale of a single reading, so for those only "0 or more" is checked.

/// Allowed units and bounds of a `{value, unit}` field.
#[derive(Clone, Copy)]
enum Range {
    /// Bounds for each unit, for units that do not convert by a factor (temperature).
    Each(&'static [(&'static str, f64, f64)]),
    /// Bounds in a base unit; each unit is paired with how many base units it holds.
    Scaled(&'static [(&'static str, f64)], f64, f64),
}

/// The bounds of one unit, in that unit, and its size in the range's base unit.
struct Bounds {
    lo: f64,
    hi: f64,
    factor: f64,
}

impl Range {
    fn units(self) -> Vec<&'static str> {
        match self {
            Range::Each(units) => units.iter().map(|u| u.0).collect(),
            Range::Scaled(units, ..) => units.iter().map(|u| u.0).collect(),
        }
    }

    fn bounds(self, unit: &str) -> Option<Bounds> {
        match self {
            Range::Each(units) => units.iter().find(|u| u.0 == unit).map(|u| Bounds {
                lo: u.1,
                hi: u.2,
                factor: 1.0,
            }),
            Range::Scaled(units, lo, hi) => units.iter().find(|u| u.0 == unit).map(|u| Bounds {
                lo: lo / u.1,
                hi: hi / u.1,
                factor: u.1,
            }),
        }
    }
}

const MASS_KG: &[(&str, f64)] = &[
    ("fg", 1e-18),
    ("pg", 1e-15),
    ("ng", 1e-12),
    ("ug", 1e-9),
    ("mg", 1e-6),
    ("g", 1e-3),
    ("kg", 1.0),
    ("Metric Ton", 1e3),
    ("gr", 6.479_891e-5),
    ("oz", 0.028_349_523_125),
    ("lb", 0.453_592_37),
    ("Ton", 907.184_74),
];
const LENGTH_M: &[(&str, f64)] = &[
    ("fm", 1e-15),
    ("pm", 1e-12),
    ("nm", 1e-9),
    ("um", 1e-6),
    ("mm", 1e-3),
    ("cm", 1e-2),
    ("m", 1.0),
    ("km", 1e3),
    ("in", 0.0254),
    ("ft", 0.3048),
    ("yd", 0.9144),
    ("mi", 1609.344),
];
// A month and a year have no fixed length; the averages (30.4375 d, 365.25 d) are close enough
// for bounds and interval ends.
const DURATION_S: &[(&str, f64)] = &[
    ("ps", 1e-12),
    ("ns", 1e-9),
    ("us", 1e-6),
    ("ms", 1e-3),
    ("sec", 1.0),
    ("min", 60.0),
    ("h", 3600.0),
    ("d", 86_400.0),
    ("wk", 604_800.0),
    ("Mo", 2_629_800.0),
    ("yr", 31_557_600.0),
];
const SLEEP_DURATION_S: &[(&str, f64)] = &[("sec", 1.0), ("min", 60.0), ("h", 3600.0)];
const SLEEP_MAX_S: f64 = 48.0 * 3600.0;
const SLEEP: Range = Range::Scaled(DURATION_S, 0.0, SLEEP_MAX_S);
const PERCENT: Range = Range::Each(&[("%", 0.0, 100.0)]);
const INTERVAL_DURATION: Quantity = Quantity {
    name: "duration",
    required: false,
    whole: false,
    range: Range::Scaled(DURATION_S, 0.0, 100.0 * 31_557_600.0),
};
const MAX_COUNT: u64 = 1000;

const MODALITIES: &str = "sensed|self-reported";
// The IEEE list; the OMH 1.0 list (step-count 3.0) is a subset of it.
const STATISTICS: &str = "average|count|maximum|median|minimum|standard deviation|sum|variance|\
    20th percentile|80th percentile|lower quartile|upper quartile|quartile deviation|\
    1st quintile|2nd quintile|3rd quintile|4th quintile";
const OFF_SCALE: &[&str] = &[
    "count",
    "standard deviation",
    "sum",
    "variance",
    "quartile deviation",
];
const TO_ACTIVITY: &str = "at rest|active|before exercise|after exercise|during exercise";
const TO_SLEEP: &str = "before sleeping|during sleep|on waking";
const TO_MEAL: &str =
    "fasting|not fasting|before meal|after meal|before breakfast|after breakfast|\
    before lunch|after lunch|before dinner|after dinner|2 hours postprandial|with meal|with food";
const SPECIMEN: &str = "breath|capillary blood|interstitial fluid|saliva|sweat|tears|urine";
const POSTURE: &str = "sitting|lying down|standing|semi-recumbent";
const BODY_SITE: &str = "left ankle|right ankle|left hip|right hip|left thigh|right thigh|\
    left thorax|middle left thorax|left upper arm|right upper arm|left wrist|right wrist";
const THERMOMETER_SITE: &str =
    "axillary|finger|forehead|oral|rectal|temporal artery|toe|tympanic|wrist|vagina";
const QUALITY: &str = "acceptable|usable|rejected";
const SLEEP_STAGES: &str = "REM_sleep|Light_sleep|Deep_sleep|Unknown_sleep|Awake";

/// A `{value, unit}` field of a body.
#[derive(Clone, Copy)]
struct Quantity {
    name: &'static str,
    required: bool,
    whole: bool,
    range: Range,
}

/// What the effective time frame of a type must be.
#[derive(Clone, Copy, PartialEq)]
enum Timing {
    /// Required: a date_time or a time_interval.
    Required,
    /// Required, and a time_interval: the type measures a period.
    Interval,
    /// rr-interval 1.0 and physical-activity 1.2 do not require one; without it the header's
    /// source (or creation) time stands in as the moment of the reading.
    Optional,
}

/// One field of a body, checked in schema order.
#[derive(Clone, Copy)]
enum Field {
    Quantity(Quantity),
    /// An optional string from a list, written "a|b|c".
    Choice(&'static str, &'static str),
    /// A required, non-empty string.
    Name(&'static str),
    /// An optional whole number, 0 to `MAX_COUNT`.
    Count(&'static str),
    Flag(&'static str),
    /// An optional bare number within bounds.
    Number(&'static str, f64, f64),
    /// `effective_time_frame`.
    Time(Timing),
    /// A required object with fields of its own.
    Group(&'static str, &'static [Field]),
    /// The IEEE list of sleep stage episodes.
    StageEpisodes(&'static str),
}

const fn quantity_field(name: &'static str, required: bool, range: Range) -> Field {
    let whole = false;
    Field::Quantity(Quantity {
        name,
        required,
        whole,
        range,
    })
}
const fn req(name: &'static str, range: Range) -> Field {
    quantity_field(name, true, range)
}
const fn opt(name: &'static str, range: Range) -> Field {
    quantity_field(name, false, range)
}
const STATISTIC: Field = Field::Choice("descriptive_statistic", STATISTICS);

/// Where a reading comes from.
#[derive(Clone, Copy)]
enum Source {
    /// A `{value, unit}` field of the body, or of one of its groups; `span` when it is a
    /// length of time, shown as hours and minutes.
    Value {
        group: Option<&'static str>,
        name: &'static str,
        span: bool,
    },
    /// The length of `effective_time_frame.time_interval`, named "duration".
    IntervalLength,
}

const fn value(name: &'static str) -> Source {
    Source::Value {
        group: None,
        name,
        span: false,
    }
}
const fn span(name: &'static str) -> Source {
    Source::Value {
        group: None,
        name,
        span: true,
    }
}
const fn stage(name: &'static str) -> Source {
    Source::Value {
        group: Some("sleep_stage_summary"),
        name,
        span: true,
    }
}

/// A supported data type: its coding code, body fields, readings and their CSV columns.
struct DataType {
    code: &'static str,
    fields: &'static [Field],
    sources: &'static [Source],
    columns: &'static [&'static str],
}

const TYPES: &[DataType] = &[
    DataType {
        code: "omh:blood-glucose:4.0",
        fields: &[
            req(
                "blood_glucose",
                Range::Each(&[("mg/dL", 1.0, 2000.0), ("mmol/L", 0.1, 110.0)]),
            ),
            Field::Choice("specimen_source", SPECIMEN),
            Field::Time(Timing::Required),
            Field::Choice("temporal_relationship_to_meal", TO_MEAL),
            Field::Choice("temporal_relationship_to_sleep", TO_SLEEP),
            STATISTIC,
        ],
        sources: &[value("blood_glucose")],
        columns: &["blood_glucose_value", "blood_glucose_unit"],
    },
    DataType {
        code: "omh:blood-pressure:4.0",
        fields: &[
            req(
                "systolic_blood_pressure",
                Range::Each(&[("mmHg", 20.0, 300.0)]),
            ),
            req(
                "diastolic_blood_pressure",
                Range::Each(&[("mmHg", 10.0, 250.0)]),
            ),
            Field::Time(Timing::Required),
            Field::Choice("body_posture", POSTURE),
            STATISTIC,
            Field::Choice("measurement_location", BODY_SITE),
            Field::Choice("temporal_relationship_to_physical_activity", TO_ACTIVITY),
        ],
        sources: &[
            value("systolic_blood_pressure"),
            value("diastolic_blood_pressure"),
        ],
        columns: &[
            "systolic_blood_pressure_value",
            "systolic_blood_pressure_unit",
            "diastolic_blood_pressure_value",
            "diastolic_blood_pressure_unit",
        ],
    },
    DataType {
        code: "omh:body-temperature:4.0",
        fields: &[
            req(
                "body_temperature",
                Range::Each(&[("K", 298.15, 318.15), ("F", 77.0, 113.0), ("C", 25.0, 45.0)]),
            ),
            Field::Time(Timing::Required),
            STATISTIC,
            Field::Choice("measurement_location", THERMOMETER_SITE),
            Field::Choice("temporal_relationship_to_sleep", TO_SLEEP),
        ],
        sources: &[value("body_temperature")],
        columns: &["body_temperature_value", "body_temperature_unit"],
    },
    DataType {
        code: "omh:heart-rate:2.0",
        fields: &[
            req("heart_rate", Range::Each(&[("beats/min", 1.0, 400.0)])),
            Field::Time(Timing::Required),
            STATISTIC,
            Field::Choice("temporal_relationship_to_physical_activity", TO_ACTIVITY),
            Field::Choice("temporal_relationship_to_sleep", TO_SLEEP),
        ],
        sources: &[value("heart_rate")],
        columns: &["heart_rate_value", "heart_rate_unit"],
    },
    DataType {
        code: "omh:oxygen-saturation:2.0",
        fields: &[
            req("oxygen_saturation", PERCENT),
            Field::Choice("system", "peripheral capillary"),
            opt(
                "supplemental_oxygen_flow_rate",
                Range::Each(&[("L/min", 0.0, 60.0)]),
            ),
            Field::Choice("oxygen_therapy_mode_of_administration", "nasal cannula"),
            Field::Choice("measurement_method", "pulse oximetry"),
            Field::Time(Timing::Required),
            STATISTIC,
        ],
        sources: &[value("oxygen_saturation")],
        columns: &["oxygen_saturation_value", "oxygen_saturation_unit"],
    },
    DataType {
        code: "omh:respiratory-rate:2.0",
        fields: &[
            req(
                "respiratory_rate",
                Range::Each(&[("breaths/min", 0.0, 200.0)]),
            ),
            Field::Time(Timing::Required),
            STATISTIC,
            Field::Choice("temporal_relationship_to_physical_activity", TO_ACTIVITY),
        ],
        sources: &[value("respiratory_rate")],
        columns: &["respiratory_rate_value", "respiratory_rate_unit"],
    },
    DataType {
        code: "omh:rr-interval:1.0",
        fields: &[
            // The schema narrows the duration units to "ms" alone.
            req("rr_interval", Range::Each(&[("ms", 1.0, 10_000.0)])),
            Field::Time(Timing::Optional),
            STATISTIC,
            Field::Choice("temporal_relationship_to_physical_activity", TO_ACTIVITY),
        ],
        sources: &[value("rr_interval")],
        columns: &["rr_interval_value", "rr_interval_unit"],
    },
    DataType {
        code: "omh:body-weight:3.0",
        fields: &[
            req("body_weight", Range::Scaled(MASS_KG, 0.2, 700.0)),
            Field::Time(Timing::Required),
            STATISTIC,
        ],
        sources: &[value("body_weight")],
        columns: &["body_weight_value", "body_weight_unit"],
    },
    DataType {
        code: "omh:forced-vital-capacity:1.0",
        fields: &[
            req("forced_vital_capacity", Range::Each(&[("L", 0.1, 10.0)])),
            Field::Choice("measurement_quality", QUALITY),
            Field::Time(Timing::Required),
            STATISTIC,
            Field::Choice("temporal_relationship_to_physical_activity", TO_ACTIVITY),
        ],
        sources: &[value("forced_vital_capacity")],
        columns: &["forced_vital_capacity_value", "forced_vital_capacity_unit"],
    },
    DataType {
        code: "omh:forced-expiratory-volume-1-second:1.0",
        fields: &[
            req(
                "forced_expiratory_volume_1_second",
                Range::Each(&[("L", 0.1, 8.0)]),
            ),
            Field::Choice("measurement_quality", QUALITY),
            Field::Time(Timing::Required),
            STATISTIC,
            Field::Choice("temporal_relationship_to_physical_activity", TO_ACTIVITY),
        ],
        sources: &[value("forced_expiratory_volume_1_second")],
        columns: &[
            "forced_expiratory_volume_1_second_value",
            "forced_expiratory_volume_1_second_unit",
        ],
    },
    DataType {
        code: "omh:physical-activity:1.2",
        fields: &[
            Field::Name("activity_name"),
            Field::Time(Timing::Optional),
            opt("distance", Range::Scaled(LENGTH_M, 0.0, 1_000_000.0)),
            opt("kcal_burned", Range::Each(&[("kcal", 0.0, 20_000.0)])),
            Field::Choice("reported_activity_intensity", "light|moderate|vigorous"),
            Field::Number("met_value", 0.0, 30.0),
        ],
        sources: &[
            value("distance"),
            Source::IntervalLength,
            value("kcal_burned"),
        ],
        columns: &[
            "distance_value",
            "distance_unit",
            "duration_value",
            "duration_unit",
            "kcal_burned_value",
            "kcal_burned_unit",
        ],
    },
    DataType {
        code: "omh:step-count:3.0",
        fields: &[
            Field::Quantity(Quantity {
                name: "step_count",
                required: true,
                whole: true,
                range: Range::Each(&[("steps", 0.0, 10_000_000.0)]),
            }),
            Field::Time(Timing::Interval),
            STATISTIC,
        ],
        sources: &[value("step_count")],
        columns: &["step_count_value", "step_count_unit"],
    },
    DataType {
        code: "omh:sleep-episode:1.1",
        fields: &[
            opt("latency_to_sleep_onset", SLEEP),
            opt("latency_to_arising", SLEEP),
            opt("total_sleep_time", SLEEP),
            opt("wake_after_sleep_onset", SLEEP),
            Field::Count("number_of_awakenings"),
            Field::Flag("is_main_sleep"),
            Field::Time(Timing::Interval),
            opt("sleep_maintenance_efficiency_percentage", PERCENT),
        ],
        // Total sleep time first: it is what the table shows, with the episode length after it.
        sources: &[
            span("total_sleep_time"),
            Source::IntervalLength,
            span("latency_to_sleep_onset"),
            span("latency_to_arising"),
            span("wake_after_sleep_onset"),
            value("sleep_maintenance_efficiency_percentage"),
        ],
        columns: &[
            "total_sleep_time_value",
            "total_sleep_time_unit",
            "duration_value",
            "duration_unit",
            "latency_to_sleep_onset_value",
            "latency_to_sleep_onset_unit",
            "latency_to_arising_value",
            "latency_to_arising_unit",
            "wake_after_sleep_onset_value",
            "wake_after_sleep_onset_unit",
            "sleep_maintenance_efficiency_percentage_value",
            "sleep_maintenance_efficiency_percentage_unit",
        ],
    },
    DataType {
        code: "omh:sleep-duration:2.0",
        fields: &[
            req(
                "sleep_duration",
                Range::Scaled(SLEEP_DURATION_S, 0.0, SLEEP_MAX_S),
            ),
            Field::Time(Timing::Interval),
            STATISTIC,
        ],
        sources: &[span("sleep_duration")],
        columns: &["sleep_duration_value", "sleep_duration_unit"],
    },
    DataType {
        code: "ieee:sleep-stage-summary:1.0",
        fields: &[
            Field::Group(
                "sleep_stage_summary",
                &[
                    req("total_sleep_time", SLEEP),
                    opt("sleep_efficiency_percentage", PERCENT),
                    opt("latency_to_sleep_onset", SLEEP),
                    opt("latency_to_arising", SLEEP),
                    opt("rem_sleep_duration", SLEEP),
                    Field::Count("rem_sleep_episode_count"),
                    opt("rem_sleep_percentage", PERCENT),
                    opt("light_sleep_duration", SLEEP),
                    Field::Count("light_sleep_episode_count"),
                    opt("light_sleep_percentage", PERCENT),
                    opt("deep_sleep_duration", SLEEP),
                    Field::Count("deep_sleep_episode_count"),
                    opt("deep_sleep_percentage", PERCENT),
                    opt("awake_duration", SLEEP),
                    Field::Count("number_of_awakenings"),
                    opt("awake_percentage", PERCENT),
                    STATISTIC,
                ],
            ),
            Field::StageEpisodes("sleep_stage_episodes"),
            Field::Time(Timing::Interval),
            Field::Flag("is_main_sleep"),
        ],
        sources: &[
            stage("total_sleep_time"),
            stage("rem_sleep_duration"),
            stage("light_sleep_duration"),
            stage("deep_sleep_duration"),
            stage("awake_duration"),
        ],
        columns: &[
            "total_sleep_time_value",
            "total_sleep_time_unit",
            "rem_sleep_duration_value",
            "rem_sleep_duration_unit",
            "light_sleep_duration_value",
            "light_sleep_duration_unit",
            "deep_sleep_duration_value",
            "deep_sleep_duration_unit",
            "awake_duration_value",
            "awake_duration_unit",
        ],
    },
];

fn data_type(code: &str) -> Option<&'static DataType> {
    TYPES.iter().find(|t| t.code == code)
}

/// Whether Cohort knows how to validate this coding code.
pub fn is_supported(code: &str) -> bool {
    data_type(code).is_some()
}

/// Validates `doc` (the decoded JSON `{header, body}`) for the data type `code`, e.g.
/// "omh:heart-rate:2.0". Returns the first problem found: document shape, then header, then
/// body fields in schema order.
pub fn validate(code: &str, doc: &Value) -> Result<Checked, Invalid> {
    let kind = data_type(code).ok_or_else(|| {
        let known: Vec<&str> = TYPES.iter().map(|t| t.code).collect();
        Invalid::new(
            "code",
            format!(
                "{code} is not a data type Cohort accepts; use one of {}",
                known.join(", ")
            ),
        )
    })?;
    let doc = doc
        .as_object()
        .ok_or_else(|| Invalid::new("$", "must be a JSON object with a header and a body"))?;
    let header = object(doc, "header", "header")?;
    let (uuid, recorded_at) = check_header(kind.code, header)?;
    let body = object(doc, "body", "body")?;
    let mut frame = None;
    check_fields(body, "body", kind.fields, &mut frame)?;
    let frame = match (frame, recorded_at) {
        (Some(frame), _) => frame,
        (None, Some(at)) => Frame {
            start: at,
            end: None,
        },
        (None, None) => {
            return Err(Invalid::new(
                "body.effective_time_frame",
                "is required when the header has no source_creation_date_time",
            ))
        }
    };
    Ok(Checked {
        uuid,
        effective_start: frame.start,
        effective_end: frame.end,
    })
}

/// The effective time of a data point.
struct Frame {
    start: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
}

fn join(prefix: &str, key: &str) -> String {
    format!("{prefix}.{key}")
}

fn required(path: impl Into<String>) -> Invalid {
    Invalid::new(path, "is required")
}

fn one_of(values: &[&str]) -> String {
    match values {
        [only] => format!("must be {only}"),
        _ => format!("must be one of {}", values.join(", ")),
    }
}

/// The required object `key` of `parent`.
fn object<'a>(
    parent: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a Map<String, Value>, Invalid> {
    parent
        .get(key)
        .ok_or_else(|| required(path))?
        .as_object()
        .ok_or_else(|| Invalid::new(path, "must be an object"))
}

/// Checks the header; returns the data point's id and when the source says it recorded it.
fn check_header(
    code: &str,
    header: &Map<String, Value>,
) -> Result<(String, Option<DateTime<Utc>>), Invalid> {
    let (key, id) = match (header.get("uuid"), header.get("id")) {
        (Some(id), _) => ("uuid", id),
        (None, Some(id)) => ("id", id),
        (None, None) => return Err(required("header.uuid")),
    };
    let id = match id.as_str() {
        Some(id) if is_uuid(id) => id.to_string(),
        Some("") => return Err(Invalid::new(join("header", key), "must not be empty")),
        _ => {
            return Err(Invalid::new(
                join("header", key),
                "must be a UUID like 123e4567-e89b-12d3-a456-426614174000",
            ))
        }
    };

    let schema_id = object(header, "schema_id", "header.schema_id")?;
    let mut parts = code.splitn(3, ':');
    let namespace = parts.next().unwrap_or_default();
    let name = parts.next().unwrap_or_default();
    let version = parts.next().unwrap_or_default();
    for (key, expected) in [("namespace", namespace), ("name", name)] {
        let path = join("header.schema_id", key);
        match schema_id.get(key) {
            None => return Err(required(path)),
            Some(given) if given.as_str() == Some(expected) => {}
            Some(_) => {
                return Err(Invalid::new(
                    path,
                    format!("must be {expected} to match {code}"),
                ))
            }
        }
    }
    let major = version.split('.').next().unwrap_or_default();
    match schema_id.get("version") {
        None => return Err(required("header.schema_id.version")),
        Some(given) if given.as_str().is_some_and(|v| same_major(v, major)) => {}
        Some(_) => {
            return Err(Invalid::new(
                "header.schema_id.version",
                format!("must be a {major}.x version such as {version} to match {code}"),
            ))
        }
    }

    let created = optional_date_time(header, "creation_date_time", "header")?;
    let source_created = optional_date_time(header, "source_creation_date_time", "header")?;
    choice(header, "header", "modality", MODALITIES)?;
    let mut provenance_created = None;
    if let Some(provenance) = header.get("acquisition_provenance") {
        let path = "header.acquisition_provenance";
        let provenance = provenance
            .as_object()
            .ok_or_else(|| Invalid::new(path, "must be an object"))?;
        provenance_created = optional_date_time(provenance, "source_creation_date_time", path)?;
        choice(provenance, path, "modality", MODALITIES)?;
    }
    Ok((id, source_created.or(provenance_created).or(created)))
}

/// 8-4-4-4-12 hexadecimal digits; version and variant digits are not checked.
fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn same_major(version: &str, major: &str) -> bool {
    version.split('.').next() == Some(major)
        && version
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn date_time(value: &Value, path: &str) -> Result<DateTime<Utc>, Invalid> {
    value
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| {
            Invalid::new(
                path,
                "must be an RFC 3339 date-time with a UTC offset, e.g. 2025-01-01T08:30:00-08:00",
            )
        })
}

fn optional_date_time(
    obj: &Map<String, Value>,
    key: &str,
    prefix: &str,
) -> Result<Option<DateTime<Utc>>, Invalid> {
    obj.get(key)
        .map(|v| date_time(v, &join(prefix, key)))
        .transpose()
}

fn choice(obj: &Map<String, Value>, prefix: &str, key: &str, values: &str) -> Result<(), Invalid> {
    match obj.get(key) {
        Some(given)
            if !given
                .as_str()
                .is_some_and(|s| values.split('|').any(|v| v == s)) =>
        {
            let values: Vec<&str> = values.split('|').collect();
            Err(Invalid::new(join(prefix, key), one_of(&values)))
        }
        _ => Ok(()),
    }
}

/// A whole, non-negative JSON number (1.0 counts, as in JSON Schema).
fn whole(value: &Value) -> Option<f64> {
    value.as_f64().filter(|n| n.fract() == 0.0 && *n >= 0.0)
}

fn check_fields(
    obj: &Map<String, Value>,
    prefix: &str,
    fields: &[Field],
    frame: &mut Option<Frame>,
) -> Result<(), Invalid> {
    let off_scale = obj
        .get("descriptive_statistic")
        .and_then(Value::as_str)
        .is_some_and(|s| OFF_SCALE.contains(&s));
    for field in fields {
        match *field {
            Field::Quantity(q) => {
                quantity(obj, prefix, q, off_scale)?;
            }
            Field::Choice(name, values) => choice(obj, prefix, name, values)?,
            Field::Name(name) => match obj.get(name) {
                None => return Err(required(join(prefix, name))),
                Some(v) if v.as_str().is_some_and(|s| !s.trim().is_empty()) => {}
                Some(_) => {
                    return Err(Invalid::new(
                        join(prefix, name),
                        "must be a name such as walking",
                    ))
                }
            },
            Field::Count(name) => match obj.get(name) {
                Some(v) if !whole(v).is_some_and(|n| n <= MAX_COUNT as f64) => {
                    let message = format!("must be a whole number between 0 and {MAX_COUNT}");
                    return Err(Invalid::new(join(prefix, name), message));
                }
                _ => {}
            },
            Field::Flag(name) => match obj.get(name) {
                Some(v) if !v.is_boolean() => {
                    return Err(Invalid::new(join(prefix, name), "must be true or false"))
                }
                _ => {}
            },
            Field::Number(name, lo, hi) => match obj.get(name) {
                Some(v) if !v.as_f64().is_some_and(|n| (lo..=hi).contains(&n)) => {
                    let message =
                        format!("must be a number between {} and {}", plain(lo), plain(hi));
                    return Err(Invalid::new(join(prefix, name), message));
                }
                _ => {}
            },
            Field::Time(timing) => {
                let path = join(prefix, "effective_time_frame");
                let interval_only = timing == Timing::Interval;
                match obj.get("effective_time_frame") {
                    None if timing == Timing::Optional => {}
                    None if interval_only => {
                        return Err(Invalid::new(path, "is required (a time_interval)"))
                    }
                    None => {
                        return Err(Invalid::new(
                            path,
                            "is required (a date_time or a time_interval)",
                        ))
                    }
                    Some(v) => *frame = Some(time_frame(v, &path, interval_only)?),
                }
            }
            Field::Group(name, inner) => {
                let path = join(prefix, name);
                check_fields(object(obj, name, &path)?, &path, inner, frame)?;
            }
            Field::StageEpisodes(name) => stage_episodes(obj, prefix, name)?,
        }
    }
    Ok(())
}

/// Checks a `{value, unit}` field; returns its value in the range's base unit when present.
fn quantity(
    obj: &Map<String, Value>,
    prefix: &str,
    q: Quantity,
    off_scale: bool,
) -> Result<Option<f64>, Invalid> {
    let path = join(prefix, q.name);
    let Some(given) = obj.get(q.name) else {
        return if q.required {
            Err(required(path))
        } else {
            Ok(None)
        };
    };
    let units = q.range.units();
    let given = given.as_object().ok_or_else(|| {
        let message = format!(
            "must be an object with a number value and a unit ({})",
            units.join(" or ")
        );
        Invalid::new(&path, message)
    })?;
    let value_path = join(&path, "value");
    let value = match given.get("value") {
        None => return Err(required(value_path)),
        Some(Value::String(_)) => {
            return Err(Invalid::new(
                value_path,
                "must be a number, not text in quotes",
            ))
        }
        Some(v) => v
            .as_f64()
            .ok_or_else(|| Invalid::new(&value_path, "must be a number"))?,
    };
    let unit_path = join(&path, "unit");
    let (unit, bounds) = match given.get("unit") {
        None => return Err(required(unit_path)),
        Some(u) => u
            .as_str()
            .and_then(|u| q.range.bounds(u).map(|b| (u, b)))
            .ok_or_else(|| Invalid::new(unit_path, one_of(&units)))?,
    };
    let kind = if q.whole {
        "a whole number"
    } else {
        "a number"
    };
    if q.whole && value.fract() != 0.0 {
        return Err(Invalid::new(value_path, format!("must be {kind} ({unit})")));
    }
    if off_scale && value < 0.0 {
        return Err(Invalid::new(
            value_path,
            format!("must be {kind} of 0 or more ({unit})"),
        ));
    }
    if !off_scale && !(bounds.lo..=bounds.hi).contains(&value) {
        let message = format!(
            "must be {kind} between {} and {} ({unit})",
            plain(bounds.lo),
            plain(bounds.hi)
        );
        return Err(Invalid::new(value_path, message));
    }
    Ok(Some(value * bounds.factor))
}

fn time_frame(value: &Value, path: &str, interval_only: bool) -> Result<Frame, Invalid> {
    let tf = value.as_object().ok_or_else(|| {
        Invalid::new(
            path,
            "must be an object with a date_time or a time_interval",
        )
    })?;
    match (tf.get("date_time"), tf.get("time_interval")) {
        (Some(_), Some(_)) => Err(Invalid::new(
            path,
            "must have a date_time or a time_interval, not both",
        )),
        (Some(_), None) | (None, None) if interval_only => Err(Invalid::new(
            join(path, "time_interval"),
            "is required: this data type covers a period, not a single moment",
        )),
        (Some(at), None) => Ok(Frame {
            start: date_time(at, &join(path, "date_time"))?,
            end: None,
        }),
        (None, Some(interval)) => time_interval(interval, &join(path, "time_interval")),
        (None, None) => Err(Invalid::new(
            path,
            "must have a date_time or a time_interval",
        )),
    }
}

/// An interval given by two of its start, end and duration, exactly as the schema's `oneOf` asks.
fn time_interval(value: &Value, path: &str) -> Result<Frame, Invalid> {
    const TWO_OF: &str = "must have two of start_date_time, end_date_time and duration";
    let interval = value
        .as_object()
        .ok_or_else(|| Invalid::new(path, TWO_OF))?;
    let start = optional_date_time(interval, "start_date_time", path)?;
    let end = optional_date_time(interval, "end_date_time", path)?;
    let length = quantity(interval, path, INTERVAL_DURATION, false)?;
    // Whole milliseconds are exact enough for an interval; 100 years fits easily in an i64.
    let length =
        length.map(|seconds| TimeDelta::try_milliseconds((seconds * 1000.0).round() as i64));
    let too_long = || Invalid::new(join(path, "duration"), "is too long");
    match (start, end, length) {
        (Some(start), Some(end), None) if end < start => Err(Invalid::new(
            join(path, "end_date_time"),
            "must not be before start_date_time",
        )),
        (Some(start), Some(end), None) => Ok(Frame {
            start,
            end: Some(end),
        }),
        (Some(start), None, Some(length)) => {
            let end = length
                .and_then(|l| start.checked_add_signed(l))
                .ok_or_else(too_long)?;
            Ok(Frame {
                start,
                end: Some(end),
            })
        }
        (None, Some(end), Some(length)) => {
            let start = length
                .and_then(|l| end.checked_sub_signed(l))
                .ok_or_else(too_long)?;
            Ok(Frame {
                start,
                end: Some(end),
            })
        }
        (Some(_), Some(_), Some(_)) => Err(Invalid::new(path, format!("{TWO_OF}, not all three"))),
        // OMH 1.x intervals may also be a date and a part of the day; Cohort needs exact times.
        (None, None, None) if interval.contains_key("date") => Err(Invalid::new(
            path,
            format!("{TWO_OF}; a date with a part_of_day is not precise enough"),
        )),
        (Some(_), None, None) => Err(Invalid::new(
            join(path, "end_date_time"),
            "is required (or a duration)",
        )),
        (None, Some(_), None) => Err(Invalid::new(
            join(path, "start_date_time"),
            "is required (or a duration)",
        )),
        (None, None, Some(_)) => Err(Invalid::new(
            join(path, "start_date_time"),
            "is required (or an end_date_time)",
        )),
        (None, None, None) => Err(Invalid::new(path, TWO_OF)),
    }
}

fn stage_episodes(obj: &Map<String, Value>, prefix: &str, name: &str) -> Result<(), Invalid> {
    let path = join(prefix, name);
    let Some(episodes) = obj.get(name) else {
        return Ok(());
    };
    let episodes = episodes
        .as_array()
        .ok_or_else(|| Invalid::new(&path, "must be a list of sleep stage episodes"))?;
    for (i, episode) in episodes.iter().enumerate() {
        let path = format!("{path}[{i}]");
        let episode = episode.as_object().ok_or_else(|| {
            Invalid::new(
                &path,
                "must be an object with sleep_stage_state and sleep_stage_time_frame",
            )
        })?;
        if !episode.contains_key("sleep_stage_state") {
            return Err(required(join(&path, "sleep_stage_state")));
        }
        choice(episode, &path, "sleep_stage_state", SLEEP_STAGES)?;
        let frame_path = join(&path, "sleep_stage_time_frame");
        let frame = episode
            .get("sleep_stage_time_frame")
            .ok_or_else(|| required(&frame_path))?;
        time_frame(frame, &frame_path, true)?;
    }
    Ok(())
}

/// The readings of a (previously validated) data point, in a stable order per type. Readings
/// keep the sender's unit; an interval given by its start and end yields a duration in minutes.
pub fn readings(code: &str, doc: &Value) -> Vec<Reading> {
    spans(code, doc)
        .into_iter()
        .map(|(reading, _)| reading)
        .collect()
}

/// The readings, each with whether it is a length of time.
fn spans(code: &str, doc: &Value) -> Vec<(Reading, bool)> {
    let (Some(kind), Some(body)) = (data_type(code), doc.get("body").and_then(Value::as_object))
    else {
        return Vec::new();
    };
    kind.sources
        .iter()
        .filter_map(|source| match *source {
            Source::Value { group, name, span } => {
                let holder = match group {
                    Some(group) => body.get(group)?.as_object()?,
                    None => body,
                };
                let given = holder.get(name)?;
                let reading = Reading {
                    name,
                    value: given.get("value")?.as_f64()?,
                    unit: given.get("unit")?.as_str()?.to_string(),
                };
                Some((reading, span))
            }
            Source::IntervalLength => interval_length(body).map(|reading| (reading, true)),
        })
        .collect()
}

fn interval_length(body: &Map<String, Value>) -> Option<Reading> {
    let interval = body.get("effective_time_frame")?.get("time_interval")?;
    if let Some(length) = interval.get("duration") {
        return Some(Reading {
            name: "duration",
            value: length.get("value")?.as_f64()?,
            unit: length.get("unit")?.as_str()?.to_string(),
        });
    }
    let start = date_time(interval.get("start_date_time")?, "").ok()?;
    let end = date_time(interval.get("end_date_time")?, "").ok()?;
    Some(Reading {
        name: "duration",
        value: (end - start).num_seconds() as f64 / 60.0,
        unit: "min".to_string(),
    })
}

/// A short human value for tables, e.g. "120/80 mmHg", "7,412 steps", "8 h 12 min"; "—" when
/// nothing can be shown.
pub fn display_value(code: &str, doc: &Value) -> String {
    let readings = spans(code, doc);
    let shown = match code {
        "omh:blood-pressure:4.0" => blood_pressure(&readings),
        "omh:physical-activity:1.2" => {
            let name = doc
                .get("body")
                .and_then(|b| b.get("activity_name"))
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|n| !n.is_empty());
            let parts: Vec<String> = name
                .map(str::to_string)
                .into_iter()
                .chain(readings.iter().map(|(r, span)| show(r, *span)))
                .collect();
            Some(parts.join(", ")).filter(|s| !s.is_empty())
        }
        _ => readings.first().map(|(r, span)| show(r, *span)),
    };
    shown.unwrap_or_else(|| "—".to_string())
}

fn blood_pressure(readings: &[(Reading, bool)]) -> Option<String> {
    let find = |name: &str| {
        readings
            .iter()
            .find(|(r, _)| r.name == name)
            .map(|(r, _)| r)
    };
    match (
        find("systolic_blood_pressure"),
        find("diastolic_blood_pressure"),
    ) {
        (Some(s), Some(d)) if s.unit == d.unit => {
            Some(format!("{}/{} {}", human(s.value), human(d.value), s.unit))
        }
        (Some(s), Some(d)) => Some(format!("{} / {}", show(s, false), show(d, false))),
        (one, other) => one.or(other).map(|r| show(r, false)),
    }
}

fn show(reading: &Reading, span: bool) -> String {
    let seconds = DURATION_S
        .iter()
        .find(|u| u.0 == reading.unit)
        .map(|u| reading.value * u.1)
        .filter(|s| s.is_finite() && *s >= 0.0);
    if let (true, Some(seconds)) = (span, seconds) {
        return clock(seconds);
    }
    let unit = match (reading.name, reading.unit.as_str()) {
        ("body_temperature", "F") => "°F",
        ("body_temperature", "C") => "°C",
        (_, unit) => unit,
    };
    format!("{} {unit}", human(reading.value))
}

/// "8 h 12 min", "45 min", "30 s": rounded to the minute from a minute up.
fn clock(seconds: f64) -> String {
    if seconds < 59.5 {
        return format!("{} s", human(seconds));
    }
    let minutes = (seconds / 60.0).round() as u64;
    match (minutes / 60, minutes % 60) {
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{} h", human(h as f64)),
        (h, m) => format!("{} h {m} min", human(h as f64)),
    }
}

/// At most two decimals, no trailing zeros, thousands separated by ",".
fn human(n: f64) -> String {
    let text = trim_zeros(format!("{n:.2}"));
    let (sign, digits) = match text.strip_prefix('-') {
        Some("0") => ("", "0"),
        Some(rest) => ("-", rest),
        None => ("", text.as_str()),
    };
    let (int, frac) = digits
        .split_once('.')
        .map_or((digits, None), |(i, f)| (i, Some(f)));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match frac {
        Some(frac) => format!("{sign}{grouped}.{frac}"),
        None => format!("{sign}{grouped}"),
    }
}

/// A bound for a message: no separators, and enough decimals to show small bounds (0.0002).
fn plain(n: f64) -> String {
    let decimals = if n == 0.0 || n.abs() >= 1.0 {
        2
    } else {
        ((-n.abs().log10()).ceil() as usize + 2).min(30)
    };
    trim_zeros(format!("{n:.decimals$}"))
}

fn trim_zeros(text: String) -> String {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// The value column names a CSV export flattens for this type, in `readings` order.
pub fn value_columns(code: &str) -> &'static [&'static str] {
    data_type(code).map_or(&[], |kind| kind.columns)
}

/// The human name of a reading for chart legends and axes.
pub fn reading_label(name: &str) -> &'static str {
    match name {
        "blood_glucose" => "Blood glucose",
        "systolic_blood_pressure" => "Systolic",
        "diastolic_blood_pressure" => "Diastolic",
        "body_temperature" => "Body temperature",
        "heart_rate" => "Heart rate",
        "oxygen_saturation" => "Oxygen saturation",
        "respiratory_rate" => "Respiratory rate",
        "rr_interval" => "RR interval",
        "body_weight" => "Body weight",
        "forced_vital_capacity" => "FVC",
        "forced_expiratory_volume_1_second" => "FEV1",
        "distance" => "Distance",
        "duration" => "Duration",
        "kcal_burned" => "Calories burned",
        "step_count" => "Steps",
        "total_sleep_time" => "Total sleep time",
        "latency_to_sleep_onset" => "Time to fall asleep",
        "latency_to_arising" => "Time to get up",
        "wake_after_sleep_onset" => "Awake after sleep onset",
        "sleep_maintenance_efficiency_percentage" => "Sleep efficiency",
        "sleep_duration" => "Sleep duration",
        "rem_sleep_duration" => "REM sleep",
        "light_sleep_duration" => "Light sleep",
        "deep_sleep_duration" => "Deep sleep",
        "awake_duration" => "Awake",
        _ => "Value",
    }
}

#[cfg(test)]
mod tests;
