//! Calendar and clock types carried by [`Value`](super::Value).
//!
//! These are deliberately minimal, validated plain data: netsvc only carries them between
//! processes and does no time-zone arithmetic. Their `Display`/`FromStr` forms are the ones
//! used by the [JSON mapping](super::json): ISO 8601 dates and times and a `PT<seconds>S`
//! duration.

use std::fmt;
use std::str::FromStr;

use super::ValueError;

const NANOS_PER_SEC: u32 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;

fn invalid(msg: impl Into<String>) -> ValueError {
    ValueError::InvalidDate(msg.into())
}

/// A proleptic Gregorian calendar date. Years may be negative (astronomical numbering: year
/// 0 is 1 BC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    year: i32,
    month: u8,
    day: u8,
}

impl Date {
    /// Creates a date, checking that the month is `1..=12` and the day exists in that month.
    pub fn new(year: i32, month: u8, day: u8) -> Result<Self, ValueError> {
        if !(1..=12).contains(&month) {
            return Err(invalid(format!("month {month} is not in 1..=12")));
        }
        if day == 0 || day > days_in_month(year, month) {
            return Err(invalid(format!(
                "day {day} does not exist in {year:04}-{month:02}"
            )));
        }
        Ok(Self { year, month, day })
    }

    /// The year.
    pub fn year(self) -> i32 {
        self.year
    }

    /// The month, `1..=12`.
    pub fn month(self) -> u8 {
        self.month
    }

    /// The day of the month, starting at 1.
    pub fn day(self) -> u8 {
        self.day
    }

    /// Days since 1970-01-01 (negative before it).
    pub fn days_since_unix_epoch(self) -> i64 {
        days_from_civil(
            i64::from(self.year),
            u32::from(self.month),
            u32::from(self.day),
        )
    }

    /// The date `days` days after 1970-01-01; fails if the year does not fit an `i32`.
    pub fn from_days_since_unix_epoch(days: i64) -> Result<Self, ValueError> {
        let (year, month, day) = civil_from_days(days);
        let year = i32::try_from(year).map_err(|_| invalid(format!("year {year} out of range")))?;
        // civil_from_days always yields a valid month and day; checked anyway for safety.
        Self::new(year, month, day)
    }
}

fn is_leap_year(year: i32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

// Howard Hinnant's algorithms (http://howardhinnant.github.io/date_algorithms.html); i64
// arithmetic cannot overflow for any i32 year or any day count derived from i64 seconds.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both are small by construction (1..=31, 1..=12).
    (year, month as u8, day as u8)
}

/// `YYYY-MM-DD`; years outside `0..=9999` are written with a sign (`-0001`, `+10000`).
impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if (0..=9999).contains(&self.year) {
            write!(f, "{:04}", self.year)?;
        } else if self.year < 0 {
            write!(f, "-{:04}", self.year.unsigned_abs())?;
        } else {
            write!(f, "+{}", self.year)?;
        }
        write!(f, "-{:02}-{:02}", self.month, self.day)
    }
}

/// Parses the [`Display`](fmt::Display) form.
impl FromStr for Date {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, ValueError> {
        let bad = || invalid(format!("{s:?} is not a date of the form YYYY-MM-DD"));
        let (negative, signed, rest) = match s.as_bytes().first() {
            Some(b'-') => (true, true, &s[1..]),
            Some(b'+') => (false, true, &s[1..]),
            _ => (false, false, s),
        };
        let year_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        // Unsigned years are exactly four digits so `20261-...` is not silently accepted.
        if year_len < 4 || (!signed && year_len != 4) || year_len > 12 {
            return Err(bad());
        }
        let (year, rest) = rest.split_at(year_len);
        let year: i64 = year.parse().map_err(|_| bad())?;
        let year = if negative { -year } else { year };
        let rest = rest.strip_prefix('-').ok_or_else(bad)?;
        let (month, rest) = two_digits(rest).ok_or_else(bad)?;
        let rest = rest.strip_prefix('-').ok_or_else(bad)?;
        let (day, rest) = two_digits(rest).ok_or_else(bad)?;
        if !rest.is_empty() {
            return Err(bad());
        }
        let year = i32::try_from(year).map_err(|_| invalid(format!("year {year} out of range")))?;
        Self::new(year, month, day)
    }
}

/// Splits off two leading ASCII digits and returns their value.
fn two_digits(s: &str) -> Option<(u8, &str)> {
    let b = s.as_bytes();
    if b.len() >= 2 && b[0].is_ascii_digit() && b[1].is_ascii_digit() {
        Some(((b[0] - b'0') * 10 + (b[1] - b'0'), &s[2..]))
    } else {
        None
    }
}

/// Parses `.d{1,9}` (the dot already stripped) into nanoseconds.
fn fraction_nanos(digits: &str) -> Option<u32> {
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u32 = digits.parse().ok()?;
    // Pad to nine digits: ".5" is 500_000_000 ns.
    Some(n * 10u32.pow(9 - digits.len() as u32))
}

/// Writes `.ddddddddd` with trailing zeros trimmed, or nothing for zero.
fn write_fraction(f: &mut fmt::Formatter<'_>, nanos: u32) -> fmt::Result {
    if nanos == 0 {
        return Ok(());
    }
    let digits = format!("{nanos:09}");
    write!(f, ".{}", digits.trim_end_matches('0'))
}

/// A time of day with nanosecond precision, without a date or time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time {
    hour: u8,
    minute: u8,
    second: u8,
    nanosecond: u32,
}

impl Time {
    /// Midnight, `00:00:00`.
    pub const MIDNIGHT: Self = Self {
        hour: 0,
        minute: 0,
        second: 0,
        nanosecond: 0,
    };

    /// Creates a time, checking `hour < 24`, `minute < 60`, `second < 60` and
    /// `nanosecond < 1_000_000_000`. Leap seconds are not representable.
    pub fn new(hour: u8, minute: u8, second: u8, nanosecond: u32) -> Result<Self, ValueError> {
        if hour > 23 || minute > 59 || second > 59 || nanosecond >= NANOS_PER_SEC {
            return Err(invalid(format!(
                "{hour:02}:{minute:02}:{second:02} + {nanosecond} ns is not a valid time of day"
            )));
        }
        Ok(Self {
            hour,
            minute,
            second,
            nanosecond,
        })
    }

    /// The hour, `0..=23`.
    pub fn hour(self) -> u8 {
        self.hour
    }

    /// The minute, `0..=59`.
    pub fn minute(self) -> u8 {
        self.minute
    }

    /// The second, `0..=59`.
    pub fn second(self) -> u8 {
        self.second
    }

    /// The fraction of the second in nanoseconds, `0..1_000_000_000`.
    pub fn nanosecond(self) -> u32 {
        self.nanosecond
    }

    fn seconds_of_day(self) -> i64 {
        i64::from(self.hour) * 3600 + i64::from(self.minute) * 60 + i64::from(self.second)
    }
}

/// `HH:MM:SS` followed by `.` and up to nine fraction digits (trailing zeros trimmed) when
/// the nanoseconds are not zero.
impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}:{:02}", self.hour, self.minute, self.second)?;
        write_fraction(f, self.nanosecond)
    }
}

/// Parses the [`Display`](fmt::Display) form; the fraction is optional.
impl FromStr for Time {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, ValueError> {
        let bad = || {
            invalid(format!(
                "{s:?} is not a time of the form HH:MM:SS[.fraction]"
            ))
        };
        let (hour, rest) = two_digits(s).ok_or_else(bad)?;
        let rest = rest.strip_prefix(':').ok_or_else(bad)?;
        let (minute, rest) = two_digits(rest).ok_or_else(bad)?;
        let rest = rest.strip_prefix(':').ok_or_else(bad)?;
        let (second, rest) = two_digits(rest).ok_or_else(bad)?;
        let nanosecond = match rest.strip_prefix('.') {
            Some(frac) => fraction_nanos(frac).ok_or_else(bad)?,
            None if rest.is_empty() => 0,
            None => return Err(bad()),
        };
        Self::new(hour, minute, second, nanosecond)
    }
}

/// A date and time of day, either naive (no offset: local time of whoever produced it, as in
/// the original system) or with a fixed offset from UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DateTime {
    date: Date,
    time: Time,
    offset_seconds: Option<i32>,
}

impl DateTime {
    /// Creates a date-time. `offset_seconds` is the offset east of UTC (`Some(0)` is UTC,
    /// `None` is naive); it must be within ±24 hours (exclusive).
    pub fn new(date: Date, time: Time, offset_seconds: Option<i32>) -> Result<Self, ValueError> {
        if let Some(offset) = offset_seconds
            && offset.unsigned_abs() >= SECS_PER_DAY as u32
        {
            return Err(invalid(format!(
                "UTC offset of {offset} seconds is not within ±24 hours"
            )));
        }
        Ok(Self {
            date,
            time,
            offset_seconds,
        })
    }

    /// A UTC date-time `seconds` (plus `nanoseconds`) after the Unix epoch.
    pub fn from_unix(seconds: i64, nanoseconds: u32) -> Result<Self, ValueError> {
        if nanoseconds >= NANOS_PER_SEC {
            return Err(invalid(format!(
                "{nanoseconds} nanoseconds is not less than one second"
            )));
        }
        let date = Date::from_days_since_unix_epoch(seconds.div_euclid(SECS_PER_DAY))?;
        let sod = seconds.rem_euclid(SECS_PER_DAY);
        // sod < 86_400, so the casts cannot truncate.
        let time = Time::new(
            (sod / 3600) as u8,
            (sod % 3600 / 60) as u8,
            (sod % 60) as u8,
            nanoseconds,
        )?;
        Self::new(date, time, Some(0))
    }

    /// Seconds and nanoseconds since the Unix epoch, or `None` for a naive date-time (whose
    /// instant is unknown).
    pub fn to_unix(self) -> Option<(i64, u32)> {
        let offset = i64::from(self.offset_seconds?);
        let seconds =
            self.date.days_since_unix_epoch() * SECS_PER_DAY + self.time.seconds_of_day() - offset;
        Some((seconds, self.time.nanosecond))
    }

    /// The calendar date.
    pub fn date(self) -> Date {
        self.date
    }

    /// The time of day.
    pub fn time(self) -> Time {
        self.time
    }

    /// The offset east of UTC in seconds, or `None` for a naive date-time.
    pub fn offset_seconds(self) -> Option<i32> {
        self.offset_seconds
    }
}

/// `<date>T<time>` followed by `Z` for UTC, `±HH:MM` (or `±HH:MM:SS`) for other offsets and
/// nothing for a naive date-time.
impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}T{}", self.date, self.time)?;
        match self.offset_seconds {
            None => Ok(()),
            Some(0) => f.write_str("Z"),
            Some(offset) => {
                let sign = if offset < 0 { '-' } else { '+' };
                let abs = offset.unsigned_abs();
                write!(f, "{sign}{:02}:{:02}", abs / 3600, abs % 3600 / 60)?;
                if abs % 60 != 0 {
                    write!(f, ":{:02}", abs % 60)?;
                }
                Ok(())
            }
        }
    }
}

/// Parses the [`Display`](fmt::Display) form.
impl FromStr for DateTime {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, ValueError> {
        let bad = || {
            invalid(format!(
                "{s:?} is not a date-time of the form YYYY-MM-DDTHH:MM:SS[.fraction][Z|±HH:MM]"
            ))
        };
        let (date, rest) = s.split_once('T').ok_or_else(bad)?;
        let date: Date = date.parse()?;
        let (time, offset) = if let Some(time) = rest.strip_suffix('Z') {
            (time, Some(0))
        } else if let Some(pos) = rest.find(['+', '-']) {
            let (time, offset) = rest.split_at(pos);
            (time, Some(parse_offset(offset).ok_or_else(bad)?))
        } else {
            (rest, None)
        };
        Self::new(date, time.parse()?, offset)
    }
}

/// Parses `±HH:MM` or `±HH:MM:SS` into seconds east of UTC.
fn parse_offset(s: &str) -> Option<i32> {
    let (negative, rest) = match s.as_bytes().first()? {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => return None,
    };
    let (hours, rest) = two_digits(rest)?;
    let (minutes, rest) = two_digits(rest.strip_prefix(':')?)?;
    let seconds = match rest.strip_prefix(':') {
        Some(rest) => {
            let (seconds, rest) = two_digits(rest)?;
            rest.is_empty().then_some(seconds)?
        }
        None if rest.is_empty() => 0,
        None => return None,
    };
    if hours > 23 || minutes > 59 || seconds > 59 {
        return None;
    }
    let total = i32::from(hours) * 3600 + i32::from(minutes) * 60 + i32::from(seconds);
    Some(if negative { -total } else { total })
}

/// A signed span of time with nanosecond precision.
///
/// `nanoseconds` has the same sign as `seconds` (or `seconds` is zero) and its magnitude is
/// below one second, so every span has exactly one representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration {
    seconds: i64,
    nanoseconds: i32,
}

impl Duration {
    /// The empty span.
    pub const ZERO: Self = Self {
        seconds: 0,
        nanoseconds: 0,
    };

    /// Creates a duration; `nanoseconds` must satisfy the invariant in the type docs.
    pub fn new(seconds: i64, nanoseconds: i32) -> Result<Self, ValueError> {
        let sign_ok = match seconds.signum() {
            1 => nanoseconds >= 0,
            -1 => nanoseconds <= 0,
            _ => true,
        };
        if !sign_ok || nanoseconds.unsigned_abs() >= NANOS_PER_SEC {
            return Err(invalid(format!(
                "duration of {seconds} s and {nanoseconds} ns: nanoseconds must be below one \
                 second and have the sign of the seconds"
            )));
        }
        Ok(Self {
            seconds,
            nanoseconds,
        })
    }

    /// Whole seconds, truncated toward zero.
    pub fn seconds(self) -> i64 {
        self.seconds
    }

    /// The sub-second part in nanoseconds, with the sign of the duration.
    pub fn nanoseconds(self) -> i32 {
        self.nanoseconds
    }

    /// Whether the duration is below zero.
    pub fn is_negative(self) -> bool {
        self.seconds < 0 || self.nanoseconds < 0
    }

    /// The duration in seconds as the nearest `f64`.
    #[allow(clippy::cast_precision_loss)] // documented: nearest float
    pub fn as_secs_f64(self) -> f64 {
        self.seconds as f64 + f64::from(self.nanoseconds) / f64::from(NANOS_PER_SEC)
    }

    /// The duration nearest to `seconds` (rounded to whole nanoseconds); fails for
    /// non-finite values and values beyond the `i64` seconds range.
    pub fn from_secs_f64(seconds: f64) -> Result<Self, ValueError> {
        // 2^63 as f64; `as` would saturate silently, so check the range explicitly.
        const LIMIT: f64 = 9_223_372_036_854_775_808.0;
        if !(-LIMIT..LIMIT).contains(&seconds) {
            return Err(invalid(format!(
                "{seconds} seconds is not a representable duration"
            )));
        }
        let whole = seconds.trunc();
        let mut secs = whole as i64;
        let mut nanos = ((seconds - whole) * f64::from(NANOS_PER_SEC)).round() as i32;
        // Rounding can carry into the next second.
        if nanos.unsigned_abs() >= NANOS_PER_SEC {
            let carry = nanos.signum();
            secs = secs
                .checked_add(i64::from(carry))
                .ok_or_else(|| invalid(format!("{seconds} seconds overflows a duration")))?;
            nanos -= carry * NANOS_PER_SEC as i32;
        }
        Self::new(secs, nanos)
    }
}

/// Saturates at `i64::MAX` seconds (about 292 billion years) rather than failing.
impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        match i64::try_from(d.as_secs()) {
            // subsec_nanos() < 1e9 always fits an i32.
            Ok(seconds) => Self {
                seconds,
                nanoseconds: d.subsec_nanos() as i32,
            },
            Err(_) => Self {
                seconds: i64::MAX,
                nanoseconds: NANOS_PER_SEC as i32 - 1,
            },
        }
    }
}

/// Fails for negative durations, which `std::time::Duration` cannot hold.
impl TryFrom<Duration> for std::time::Duration {
    type Error = ValueError;

    fn try_from(d: Duration) -> Result<Self, ValueError> {
        if d.is_negative() {
            return Err(invalid(format!(
                "negative duration {d} cannot become a std::time::Duration"
            )));
        }
        Ok(Self::new(
            d.seconds.unsigned_abs(),
            d.nanoseconds.unsigned_abs(),
        ))
    }
}

/// `[-]PT<seconds>[.<fraction>]S`, e.g. `PT1.5S`, `-PT30S`, `PT0S` (an ISO 8601 duration
/// using only the seconds designator; trailing fraction zeros are trimmed).
impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_negative() {
            f.write_str("-")?;
        }
        write!(f, "PT{}", self.seconds.unsigned_abs())?;
        write_fraction(f, self.nanoseconds.unsigned_abs())?;
        f.write_str("S")
    }
}

/// Parses the [`Display`](fmt::Display) form.
impl FromStr for Duration {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, ValueError> {
        let bad = || {
            invalid(format!(
                "{s:?} is not a duration of the form [-]PT<seconds>S"
            ))
        };
        let (negative, rest) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let rest = rest.strip_prefix("PT").ok_or_else(bad)?;
        let rest = rest.strip_suffix('S').ok_or_else(bad)?;
        let (whole, frac) = match rest.split_once('.') {
            Some((whole, frac)) => (whole, fraction_nanos(frac).ok_or_else(bad)?),
            None => (rest, 0),
        };
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let whole: u64 = whole.parse().map_err(|_| bad())?;
        let (seconds, nanos) = if negative {
            (-i128::from(whole), -i128::from(frac))
        } else {
            (i128::from(whole), i128::from(frac))
        };
        let seconds =
            i64::try_from(seconds).map_err(|_| invalid(format!("{s:?} is out of range")))?;
        // |nanos| < 1e9, so it fits an i32.
        Self::new(seconds, nanos as i32)
    }
}
