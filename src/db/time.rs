//! Timestamps read and written by hand on SQLite.
//!
//! SQLite keeps a timestamp as text. diesel reads one by trying chrono's `parse_from_str`
//! with one format string after another, and writes one through a format string too: in a
//! FHIR export of a thousand observations a page (four timestamps each) that was a tenth of
//! the server's time. [`Stamp`] reads and writes the one form Cohort stores,
//! `YYYY-MM-DD HH:MM:SS` with a fraction of 3, 6 or 9 digits when there is one (the text
//! diesel writes), directly, and hands any other text to chrono. PostgreSQL sends
//! timestamps as binary numbers and is left to diesel.

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::pg::Pg;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::{Date, Nullable, Timestamp};
use diesel::sqlite::Sqlite;

use super::conn::MultiRawValue;
use super::MultiBackend;

/// A timestamp column's value: `#[diesel(deserialize_as = Stamp)]` on a `NaiveDateTime`
/// field, or bound in [`crate::db::sql::Sql`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromSqlRow)]
pub struct Stamp(pub NaiveDateTime);

/// A nullable timestamp column's value: `#[diesel(deserialize_as = OptStamp)]` on an
/// `Option<NaiveDateTime>` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromSqlRow)]
pub struct OptStamp(pub Option<NaiveDateTime>);

impl From<Stamp> for NaiveDateTime {
    fn from(s: Stamp) -> Self {
        s.0
    }
}

impl From<OptStamp> for Option<NaiveDateTime> {
    fn from(s: OptStamp) -> Self {
        s.0
    }
}

/// A SQLite value in Cohort's own form, read by `ours`; any other text as diesel reads
/// it for the column's type `ST`.
fn read_sqlite<T, ST>(
    mut v: diesel::sqlite::SqliteValue<'_, '_, '_>,
    ours: fn(&str) -> Option<T>,
) -> deserialize::Result<T>
where
    T: FromSql<ST, Sqlite>,
{
    let parsed = ours(v.read_text());
    match parsed {
        Some(t) => Ok(t),
        None => T::from_sql(v),
    }
}

impl FromSql<Timestamp, MultiBackend> for Stamp {
    fn from_sql(bytes: MultiRawValue<'_>) -> deserialize::Result<Self> {
        match bytes {
            MultiRawValue::Sqlite(v) => read_sqlite::<_, Timestamp>(v, parse).map(Stamp),
            MultiRawValue::Postgres(v) => {
                <NaiveDateTime as FromSql<Timestamp, Pg>>::from_sql(v).map(Stamp)
            }
        }
    }
}

impl FromSql<Nullable<Timestamp>, MultiBackend> for OptStamp {
    fn from_sql(bytes: MultiRawValue<'_>) -> deserialize::Result<Self> {
        <Stamp as FromSql<Timestamp, MultiBackend>>::from_sql(bytes).map(|s| OptStamp(Some(s.0)))
    }

    fn from_nullable_sql(bytes: Option<MultiRawValue<'_>>) -> deserialize::Result<Self> {
        match bytes {
            Some(b) => Self::from_sql(b),
            None => Ok(OptStamp(None)),
        }
    }
}

impl ToSql<Timestamp, MultiBackend> for Stamp {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, MultiBackend>) -> serialize::Result {
        out.set_value((Timestamp, self));
        Ok(IsNull::No)
    }
}

impl ToSql<Timestamp, Sqlite> for Stamp {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(format(self.0));
        Ok(IsNull::No)
    }
}

impl ToSql<Timestamp, Pg> for Stamp {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <NaiveDateTime as ToSql<Timestamp, Pg>>::to_sql(&self.0, out)
    }
}

/// A nullable date column's value: `#[diesel(deserialize_as = OptDay)]` on an
/// `Option<NaiveDate>` field. SQLite's `YYYY-MM-DD` is read directly, as timestamps are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromSqlRow)]
pub struct OptDay(pub Option<NaiveDate>);

impl From<OptDay> for Option<NaiveDate> {
    fn from(d: OptDay) -> Self {
        d.0
    }
}

impl FromSql<Nullable<Date>, MultiBackend> for OptDay {
    fn from_sql(bytes: MultiRawValue<'_>) -> deserialize::Result<Self> {
        let day = match bytes {
            MultiRawValue::Sqlite(v) => read_sqlite::<_, Date>(v, parse_date)?,
            MultiRawValue::Postgres(v) => <NaiveDate as FromSql<Date, Pg>>::from_sql(v)?,
        };
        Ok(OptDay(Some(day)))
    }

    fn from_nullable_sql(bytes: Option<MultiRawValue<'_>>) -> deserialize::Result<Self> {
        match bytes {
            Some(b) => Self::from_sql(b),
            None => Ok(OptDay(None)),
        }
    }
}

/// `YYYY-MM-DD` and nothing after it; None for anything else or a day that does not exist.
fn parse_date(text: &str) -> Option<NaiveDate> {
    if text.len() != 10 {
        return None;
    }
    date_at(text.as_bytes())
}

/// The `YYYY-MM-DD` at the start of `b` (which has at least 10 bytes).
fn date_at(b: &[u8]) -> Option<NaiveDate> {
    if b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    NaiveDate::from_ymd_opt(
        number(&b[0..4])? as i32,
        number(&b[5..7])?,
        number(&b[8..10])?,
    )
}

/// The decimal number the bytes spell, all digits.
fn number(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |n, d| {
        d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
    })
}

/// `YYYY-MM-DD HH:MM:SS` with an optional fraction of 1 to 9 digits (`T` may stand for the
/// space); None for anything else, or a date or time that does not exist.
pub fn parse(text: &str) -> Option<NaiveDateTime> {
    let b = text.as_bytes();
    if b.len() < 19 || (b[10] != b' ' && b[10] != b'T') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let nanos = match &b[19..] {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
            number(digits)? * 10u32.pow(9 - digits.len() as u32)
        }
        _ => return None,
    };
    let time = NaiveTime::from_hms_nano_opt(
        number(&b[11..13])?,
        number(&b[14..16])?,
        number(&b[17..19])?,
        nanos,
    )?;
    Some(date_at(b)?.and_time(time))
}

/// The text diesel writes for a timestamp (`%Y-%m-%d %H:%M:%S%.f`): the fraction in 3, 6
/// or 9 digits, whichever shows it whole, and none when it is zero.
pub fn format(t: NaiveDateTime) -> String {
    digits(t, ' ').unwrap_or_else(|| t.format("%Y-%m-%d %H:%M:%S%.f").to_string())
}

/// `YYYY-MM-DD<sep>HH:MM:SS` and the fraction as [`format`] writes it, digit by digit; None
/// for years outside four digits and leap seconds, whose forms the caller leaves to chrono.
pub fn digits(t: NaiveDateTime, sep: char) -> Option<String> {
    let (year, nanos) = (t.year(), t.nanosecond());
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        return None;
    }
    let mut s = String::with_capacity(35);
    push_digits(&mut s, year as u32, 4);
    for (before, n) in [
        ('-', t.month()),
        ('-', t.day()),
        (sep, t.hour()),
        (':', t.minute()),
        (':', t.second()),
    ] {
        s.push(before);
        push_digits(&mut s, n, 2);
    }
    if nanos != 0 {
        s.push('.');
        if nanos % 1_000_000 == 0 {
            push_digits(&mut s, nanos / 1_000_000, 3);
        } else if nanos % 1_000 == 0 {
            push_digits(&mut s, nanos / 1_000, 6);
        } else {
            push_digits(&mut s, nanos, 9);
        }
    }
    Some(s)
}

/// `n` in exactly `width` decimal digits (n has at most that many).
fn push_digits(s: &mut String, n: u32, width: u32) {
    for i in (0..width).rev() {
        s.push(char::from(b'0' + (n / 10u32.pow(i) % 10) as u8));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, nanos: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d)
            .and_then(|day| day.and_hms_nano_opt(h, mi, s, nanos))
            .expect("the tests name real times")
    }

    #[test]
    fn writes_what_diesel_writes_and_reads_it_back() {
        let mut n: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut cases = vec![
            at(2026, 11, 22, 0, 0, 0, 0),
            at(1999, 12, 31, 23, 59, 59, 999_999_999),
            at(2026, 1, 1, 8, 0, 0, 120_000_000),
            at(2026, 1, 1, 8, 0, 0, 123_456_000),
            at(2026, 1, 1, 8, 0, 0, 1),
            at(0, 1, 1, 0, 0, 0, 0),
            at(9999, 12, 31, 23, 59, 59, 500_000),
        ];
        for _ in 0..2000 {
            // A spread of times and fractions of every width.
            n ^= n << 13;
            n ^= n >> 7;
            n ^= n << 17;
            let nanos = match n % 4 {
                0 => 0,
                1 => (n >> 8) as u32 % 1000 * 1_000_000,
                2 => (n >> 8) as u32 % 1_000_000 * 1000,
                _ => (n >> 8) as u32 % 1_000_000_000,
            };
            cases.push(at(
                1900 + (n >> 20) as i32 % 200,
                1 + (n >> 28) as u32 % 12,
                1 + (n >> 32) as u32 % 28,
                (n >> 36) as u32 % 24,
                (n >> 41) as u32 % 60,
                (n >> 47) as u32 % 60,
                nanos,
            ));
        }
        for t in cases {
            let chrono = t.format("%Y-%m-%d %H:%M:%S%.f").to_string();
            assert_eq!(format(t), chrono);
            assert_eq!(parse(&chrono), Some(t), "{chrono}");
        }
    }

    #[test]
    fn reads_a_t_and_short_fractions_and_refuses_the_rest() {
        assert_eq!(
            parse("2026-03-04T05:06:07.5"),
            Some(at(2026, 3, 4, 5, 6, 7, 500_000_000))
        );
        for bad in [
            "",
            "2026-03-04",
            "2026-03-04 05:06",
            "2026-02-30 00:00:00",
            "2026-03-04 24:00:00",
            "2026-03-04 05:06:07.",
            "2026-03-04 05:06:07.1234567890",
            "2026-03-04 05:06:07Z",
            "2026-03-04 05:06:07+00:00",
            "2026/03/04 05:06:07",
            "2026-03-04 05:0x:07",
            "２026-03-04 05:06:07",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn reads_a_date_and_refuses_the_rest() {
        assert_eq!(
            parse_date("1980-02-29"),
            NaiveDate::from_ymd_opt(1980, 2, 29)
        );
        for bad in [
            "1981-02-29",
            "1980-2-29",
            "1980-02-29 ",
            "19800229",
            "1980/02/29",
            "",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }
}
