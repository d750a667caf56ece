//! A patient's readings of one data type over time, drawn on the server as SVG: no chart
//! library in the browser. Lines are styled by app.css classes, so the page's CSP holds.

use std::fmt::Write;

use chrono::{NaiveDateTime, Offset, TimeZone};
use chrono_tz::Tz;

use super::omh;
use super::Observation;

const W: f64 = 820.0;
const H: f64 = 340.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 20.0;
const BOTTOM: f64 = 48.0;

/// One named line: (time, value) points in time order.
struct Series {
    name: &'static str,
    points: Vec<(NaiveDateTime, f64)>,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Round steps (1, 2, 5 × 10ⁿ) spanning [lo, hi] with about `n` ticks.
pub fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if !lo.is_finite() || !hi.is_finite() || n == 0 {
        return Vec::new();
    }
    let (lo, hi) = if (hi - lo).abs() < f64::EPSILON {
        (lo - 1.0, hi + 1.0)
    } else {
        (lo, hi)
    };
    let raw = (hi - lo) / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).floor();
    let last = (hi / step).ceil();
    (0..=((last - first) as usize).min(50))
        .map(|i| (first + i as f64) * step)
        .collect()
}

/// Instants between `t0` and `t1` that fall on round local times: a step of whole hours or
/// days chosen for about six labels.
pub fn time_ticks(t0: NaiveDateTime, t1: NaiveDateTime, tz: Tz) -> Vec<NaiveDateTime> {
    const HOUR: i64 = 3600;
    const DAY: i64 = 86_400;
    let span = (t1 - t0).num_seconds().max(1);
    let step = [
        HOUR,
        2 * HOUR,
        3 * HOUR,
        6 * HOUR,
        12 * HOUR,
        DAY,
        2 * DAY,
        7 * DAY,
        14 * DAY,
        30 * DAY,
        91 * DAY,
        182 * DAY,
        365 * DAY,
    ]
    .into_iter()
    .find(|s| span / s <= 6)
    .unwrap_or(365 * DAY);
    // Work in local wall time, so days start at the viewer's midnight.
    let offset = |t: NaiveDateTime| tz.offset_from_utc_datetime(&t).fix().local_minus_utc() as i64;
    let local0 = t0.and_utc().timestamp() + offset(t0);
    let mut wall = local0.div_euclid(step) * step;
    if wall < local0 {
        wall += step;
    }
    let mut out = Vec::new();
    while out.len() < 12 {
        let guess = wall - offset(t0);
        let Some(t) =
            chrono::DateTime::from_timestamp(guess - (offset_at(guess, tz) - offset(t0)), 0)
        else {
            break;
        };
        let t = t.naive_utc();
        if t > t1 {
            break;
        }
        if t >= t0 {
            out.push(t);
        }
        wall += step;
    }
    out
}

fn offset_at(utc_seconds: i64, tz: Tz) -> i64 {
    chrono::DateTime::from_timestamp(utc_seconds, 0)
        .map(|t| {
            tz.offset_from_utc_datetime(&t.naive_utc())
                .fix()
                .local_minus_utc() as i64
        })
        .unwrap_or(0)
}

fn label(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// The chart as an SVG element, or a sentence when there is nothing numeric to draw.
pub fn render(code: &str, title: &str, points: &[Observation], tz: Tz) -> String {
    let mut series: Vec<Series> = Vec::new();
    let mut unit = String::new();
    // Points come newest first; draw oldest to newest.
    for o in points.iter().rev() {
        let Ok(doc) = serde_json::from_str::<serde_json::Value>(&o.omh_data) else {
            continue;
        };
        for r in omh::readings(code, &doc) {
            if unit.is_empty() {
                unit = r.unit.clone();
            }
            match series.iter_mut().find(|s| s.name == r.name) {
                Some(s) => s.points.push((o.effective_start, r.value)),
                None => series.push(Series {
                    name: r.name,
                    points: vec![(o.effective_start, r.value)],
                }),
            }
        }
    }
    let all: Vec<(NaiveDateTime, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .collect();
    if all.is_empty() {
        return String::new();
    }
    let t0 = all.iter().map(|p| p.0).min().unwrap_or_default();
    let t1 = all.iter().map(|p| p.0).max().unwrap_or_default();
    let vmin = all.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let vmax = all.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let yt = ticks(vmin, vmax, 5);
    let (ylo, yhi) = (
        yt.first().copied().unwrap_or(vmin),
        yt.last().copied().unwrap_or(vmax),
    );
    let span_t = ((t1 - t0).num_seconds() as f64).max(1.0);
    let x = |t: NaiveDateTime| LEFT + (t - t0).num_seconds() as f64 / span_t * (W - LEFT - RIGHT);
    let y = |v: f64| {
        let span = (yhi - ylo).max(f64::EPSILON);
        TOP + (1.0 - (v - ylo) / span) * (H - TOP - BOTTOM)
    };
    let local = |t: NaiveDateTime, fmt: &str| tz.from_utc_datetime(&t).format(fmt).to_string();
    let mut s = String::with_capacity(4096 + all.len() * 24);
    let desc = format!(
        "{} reading{} from {} to {}, between {} and {} {}.",
        all.len(),
        if all.len() == 1 { "" } else { "s" },
        local(t0, "%Y-%m-%d %H:%M"),
        local(t1, "%Y-%m-%d %H:%M"),
        label(vmin),
        label(vmax),
        unit
    );
    let _ = write!(
        s,
        r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-labelledby="chart-title chart-desc" xmlns="http://www.w3.org/2000/svg"><title id="chart-title">{}</title><desc id="chart-desc">{}</desc>"#,
        escape(title),
        escape(&desc)
    );
    // Grid and value axis, labelled with the unit.
    for v in &yt {
        let yy = y(*v);
        let _ = write!(
            s,
            r#"<line class="chart-grid" x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}"/><text class="chart-tick" x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            W - RIGHT,
            LEFT - 6.0,
            yy + 4.0,
            label(*v)
        );
    }
    let _ = write!(
        s,
        r#"<text class="chart-unit" x="12" y="{:.1}" transform="rotate(-90 12 {:.1})" text-anchor="middle">{}</text>"#,
        (TOP + H - BOTTOM) / 2.0,
        (TOP + H - BOTTOM) / 2.0,
        escape(&unit)
    );
    // Time axis: labels at round local times (whole hours or days), about six of them.
    let fmt = if span_t > 3.0 * 86400.0 {
        "%Y-%m-%d"
    } else {
        "%m-%d %H:%M"
    };
    for t in time_ticks(t0, t1, tz) {
        let xx = x(t);
        let _ = write!(
            s,
            r#"<line class="chart-axis" x1="{xx:.1}" x2="{xx:.1}" y1="{}" y2="{}"/><text class="chart-tick" x="{xx:.1}" y="{}" text-anchor="middle">{}</text>"#,
            H - BOTTOM,
            H - BOTTOM + 5.0,
            H - BOTTOM + 20.0,
            local(t, fmt)
        );
    }
    let _ = write!(
        s,
        r#"<line class="chart-axis" x1="{LEFT}" x2="{}" y1="{}" y2="{}"/>"#,
        W - RIGHT,
        H - BOTTOM,
        H - BOTTOM
    );
    for (i, ser) in series.iter().enumerate() {
        let mut path = String::with_capacity(ser.points.len() * 16);
        for (j, (t, v)) in ser.points.iter().enumerate() {
            let _ = write!(
                path,
                "{}{:.1},{:.1}",
                if j == 0 { "M" } else { " L" },
                x(*t),
                y(*v)
            );
        }
        let _ = write!(s, r#"<path class="chart-line chart-line-{i}" d="{path}"/>"#);
        if ser.points.len() <= 300 {
            for (t, v) in &ser.points {
                let _ = write!(
                    s,
                    r#"<circle class="chart-dot chart-line-{i}" cx="{:.1}" cy="{:.1}" r="2.5"><title>{} {} {}</title></circle>"#,
                    x(*t),
                    y(*v),
                    local(*t, "%Y-%m-%d %H:%M"),
                    label(*v),
                    escape(&unit)
                );
            }
        }
        if series.len() > 1 {
            let lx = LEFT + 8.0 + i as f64 * 140.0;
            let _ = write!(
                s,
                r#"<rect class="chart-key chart-line-{i}" x="{lx}" y="{}" width="12" height="4"/><text class="chart-tick" x="{}" y="{}">{}</text>"#,
                H - 10.0,
                lx + 16.0,
                H - 6.0,
                omh::reading_label(ser.name)
            );
        }
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        let t = ticks(57.0, 121.0, 5);
        assert_eq!(t.first().copied(), Some(40.0));
        assert_eq!(t.last().copied(), Some(140.0));
        assert!(t.last().copied().unwrap_or_default() >= 121.0);
        assert!(t.windows(2).all(|w| (w[1] - w[0] - 20.0).abs() < 1e-9));
        assert!(ticks(5.0, 5.0, 5).len() >= 2);
        assert!(ticks(f64::NAN, 1.0, 5).is_empty());
    }

    #[test]
    fn time_ticks_fall_on_round_local_times() {
        let at =
            |s: &str| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").expect("a time");
        let t = time_ticks(at("2025-02-01 01:00"), at("2025-02-02 03:00"), Tz::UTC);
        assert_eq!(
            t,
            [
                at("2025-02-01 06:00"),
                at("2025-02-01 12:00"),
                at("2025-02-01 18:00"),
                at("2025-02-02 00:00")
            ]
        );
        // Days start at the viewer's midnight: 05:00 UTC in New York in winter.
        let t = time_ticks(
            at("2025-01-01 00:00"),
            at("2025-01-06 00:00"),
            Tz::America__New_York,
        );
        assert_eq!(t.first().copied(), Some(at("2025-01-01 05:00")));
        assert!(t.iter().all(|x| x.format("%H:%M").to_string() == "05:00"));
    }

    #[test]
    fn labels_drop_trailing_zeros() {
        assert_eq!(label(120.0), "120");
        assert_eq!(label(5.4), "5.4");
        assert_eq!(label(0.25), "0.25");
    }
}
