//! ISO-8601 durations (`P2M`, `P14D`, `P1Y`, `PT12H`, `P2W`, `P1Y2M3DT4H5M6S`).
//!
//! Years and months are calendar units, so a duration is kept as separate month, day and
//! second counts and added to a date with calendar arithmetic. Multiples are always computed
//! from the anchor (`start + n×d`, never `(start + d) + d`) so month ends do not drift:
//! 2024-01-31 + 1×P1M = Feb 29, + 2×P1M = Mar 31.
//!
//! Serialized as its string form (`"P2M"`).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Days, Months, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IsoDuration {
    pub months: u32,
    pub days: u32,
    pub seconds: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration `{0}`: use a positive ISO-8601 duration such as P2M, P14D, P2W, P1Y, PT12H or P1Y2M3DT4H5M6S"
)]
pub struct InvalidDuration(pub String);

impl IsoDuration {
    pub const fn months(months: u32) -> Self {
        Self {
            months,
            days: 0,
            seconds: 0,
        }
    }

    pub const fn days(days: u32) -> Self {
        Self {
            months: 0,
            days,
            seconds: 0,
        }
    }

    /// `start + times × self`, or None if the result is out of chrono's range.
    /// Months first (clamped to the month's last day), then days, then seconds.
    pub fn add_to(&self, start: DateTime<Utc>, times: u32) -> Option<DateTime<Utc>> {
        let months = self.months.checked_mul(times)?;
        let days = u64::from(self.days).checked_mul(u64::from(times))?;
        let seconds = i64::try_from(self.seconds.checked_mul(u64::from(times))?).ok()?;
        start
            .checked_add_months(Months::new(months))?
            .checked_add_days(Days::new(days))?
            .checked_add_signed(TimeDelta::try_seconds(seconds)?)
    }
}

impl FromStr for IsoDuration {
    type Err = InvalidDuration;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s).ok_or_else(|| InvalidDuration(s.to_owned()))
    }
}

fn parse(s: &str) -> Option<IsoDuration> {
    let body = s.strip_prefix('P')?;
    let (date, time) = match body.split_once('T') {
        Some((d, t)) if !t.is_empty() => (d, Some(t)),
        Some(_) => return None, // `PT`, `P1DT`: a T must be followed by something
        None => (body, None),
    };
    let mut out = IsoDuration {
        months: 0,
        days: 0,
        seconds: 0,
    };
    let mut any = false;
    // Units must appear in this order, each at most once.
    for (n, unit) in components(date, &['Y', 'M', 'W', 'D'])? {
        any = true;
        let n = u32::try_from(n).ok()?;
        match unit {
            'Y' => out.months = out.months.checked_add(n.checked_mul(12)?)?,
            'M' => out.months = out.months.checked_add(n)?,
            'W' => out.days = out.days.checked_add(n.checked_mul(7)?)?,
            _ => out.days = out.days.checked_add(n)?,
        }
    }
    if let Some(time) = time {
        for (n, unit) in components(time, &['H', 'M', 'S'])? {
            any = true;
            let secs = match unit {
                'H' => n.checked_mul(3600)?,
                'M' => n.checked_mul(60)?,
                _ => n,
            };
            out.seconds = out.seconds.checked_add(secs)?;
        }
    }
    let zero = out.months == 0 && out.days == 0 && out.seconds == 0;
    (any && !zero).then_some(out)
}

/// Splits `1Y2M` into `[(1,'Y'), (2,'M')]`, enforcing unit order and digits-only numbers.
fn components(s: &str, units: &[char]) -> Option<Vec<(u64, char)>> {
    let mut out = Vec::new();
    let mut next_unit = 0;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let pos = units.iter().position(|&u| u == c)?;
        if digits.is_empty() || pos < next_unit {
            return None;
        }
        out.push((digits.parse().ok()?, c));
        digits.clear();
        next_unit = pos + 1;
    }
    digits.is_empty().then_some(out)
}

impl fmt::Display for IsoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("P")?;
        let (years, months) = (self.months / 12, self.months % 12);
        if years > 0 {
            write!(f, "{years}Y")?;
        }
        if months > 0 {
            write!(f, "{months}M")?;
        }
        if self.days > 0 {
            write!(f, "{}D", self.days)?;
        }
        if self.seconds > 0 {
            f.write_str("T")?;
            let (h, m, s) = (
                self.seconds / 3600,
                self.seconds / 60 % 60,
                self.seconds % 60,
            );
            if h > 0 {
                write!(f, "{h}H")?;
            }
            if m > 0 {
                write!(f, "{m}M")?;
            }
            if s > 0 {
                write!(f, "{s}S")?;
            }
        }
        if self.months == 0 && self.days == 0 && self.seconds == 0 {
            f.write_str("T0S")?;
        }
        Ok(())
    }
}

impl TryFrom<String> for IsoDuration {
    type Error = InvalidDuration;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<IsoDuration> for String {
    fn from(value: IsoDuration) -> Self {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> IsoDuration {
        s.parse().unwrap()
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(d("P2M"), IsoDuration::months(2));
        assert_eq!(d("P14D"), IsoDuration::days(14));
        assert_eq!(d("P2W"), IsoDuration::days(14));
        assert_eq!(d("P1Y"), IsoDuration::months(12));
        assert_eq!(
            d("PT12H"),
            IsoDuration {
                months: 0,
                days: 0,
                seconds: 43_200
            }
        );
        assert_eq!(
            d("P1Y2M3DT4H5M6S"),
            IsoDuration {
                months: 14,
                days: 3,
                seconds: 4 * 3600 + 5 * 60 + 6
            }
        );
    }

    #[test]
    fn rejects_empty_zero_negative_and_malformed() {
        for bad in [
            "",
            "P",
            "PT",
            "P0D",
            "PT0S",
            "-P1D",
            "P-1D",
            "P1",
            "1D",
            "P1DT",
            "P1M1Y",
            "P1D1D",
            "P1H",
            "PT1D",
            "P1.5D",
            "p1d",
            "P 1D",
            "P99999999999Y",
        ] {
            assert!(bad.parse::<IsoDuration>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "P2M",
            "P14D",
            "P1Y",
            "PT12H",
            "P1Y2M3DT4H5M6S",
            "PT1M",
            "P1DT1S",
        ] {
            assert_eq!(d(s).to_string(), s);
            assert_eq!(d(&d(s).to_string()), d(s));
        }
        assert_eq!(serde_json::to_string(&d("P2M")).unwrap(), "\"P2M\"");
        assert_eq!(
            serde_json::from_str::<IsoDuration>("\"P2W\"").unwrap(),
            d("P14D")
        );
    }

    #[test]
    fn month_multiples_are_computed_from_the_anchor() {
        let from = t("2024-01-31T00:00:00Z");
        let ends: Vec<_> = (1..=3).map(|i| d("P1M").add_to(from, i).unwrap()).collect();
        assert_eq!(
            ends,
            [
                t("2024-02-29T00:00:00Z"),
                t("2024-03-31T00:00:00Z"),
                t("2024-04-30T00:00:00Z")
            ]
        );
    }

    #[test]
    fn add_to_overflow_is_none() {
        assert_eq!(
            d("P1000Y").add_to(t("2024-01-01T00:00:00Z"), 1_000_000),
            None
        );
    }
}
