//! UTC timestamps for report and bench headers, without a date crate: the one place lossdiff turns
//! Unix seconds into a calendar date.

/// Seconds since the Unix epoch now; 0 when the clock reads earlier than that.
pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Formats seconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub(crate) fn utc_seconds(secs: i64) -> String {
    let (date, rem) = utc_date_and_rest(secs);
    format!(
        "{date} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Formats seconds since the Unix epoch as `YYYY-MM-DD HH:MM UTC`.
pub(crate) fn utc_minutes(secs: i64) -> String {
    let (date, rem) = utc_date_and_rest(secs);
    format!("{date} {:02}:{:02} UTC", rem / 3600, rem % 3600 / 60)
}

/// Returns `YYYY-MM-DD` and the seconds into that day.
///
/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 → (year, month, day), proleptic
/// Gregorian, via 400-year eras of 146,097 days.
fn utc_date_and_rest(secs: i64) -> (String, i64) {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (format!("{year:04}-{month:02}-{day:02}"), rem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_gnu_date() {
        // date -u -d @0 '+%F %H:%M'           -> 1970-01-01 00:00
        assert_eq!(utc_minutes(0), "1970-01-01 00:00 UTC");
        // date -u -d @951782400 '+%F %H:%M'   -> 2000-02-29 00:00 (a 400-year leap day)
        assert_eq!(utc_minutes(951_782_400), "2000-02-29 00:00 UTC");
        // date -u -d @1796495400 '+%F %T'     -> 2026-12-05 18:30:00
        assert_eq!(utc_seconds(1_796_495_400), "2026-12-05 18:30:00 UTC");
        // date -u -d @1796495459 '+%F %T'     -> 2026-12-05 18:30:59
        assert_eq!(utc_seconds(1_796_495_459), "2026-12-05 18:30:59 UTC");
    }
}
