//! WeChat's days: daily quotas (45009, `force_refresh`'s 20 a day) reset at 00:00 China
//! Standard Time, UTC+8, which has no daylight saving time.

/// Seconds China Standard Time is ahead of UTC.
pub const UTC_OFFSET_SECS: i64 = 8 * 3600;
const DAY_SECS: i64 = 24 * 3600;

/// The day number of `unix_secs` in China Standard Time: day 0 began at 1970-01-01 00:00 CST
/// (1969-12-31 16:00 UTC). Two instants share a quota day exactly when their numbers are equal.
pub fn day(unix_secs: i64) -> i64 {
    (unix_secs + UTC_OFFSET_SECS).div_euclid(DAY_SECS)
}

/// The first 00:00 China Standard Time strictly after `unix_secs`, in Unix seconds: when the
/// daily quotas reset next.
pub fn next_midnight(unix_secs: i64) -> i64 {
    (day(unix_secs) + 1) * DAY_SECS - UTC_OFFSET_SECS
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-01-01 00:00:00 UTC.
    const JAN_1: i64 = 1_767_225_600;
    const H: i64 = 3600;

    #[test]
    fn the_day_turns_at_16_00_utc() {
        assert_eq!(day(JAN_1 + 16 * H - 1), day(JAN_1));
        assert_eq!(day(JAN_1 + 16 * H), day(JAN_1) + 1);
        assert_eq!(day(0), 0, "1970-01-01 00:00 UTC was 08:00 CST");
        assert_eq!(day(-8 * H), 0);
        assert_eq!(day(-8 * H - 1), -1, "before the epoch too");
    }

    #[test]
    fn the_next_midnight_is_strictly_later() {
        assert_eq!(next_midnight(JAN_1), JAN_1 + 16 * H);
        assert_eq!(next_midnight(JAN_1 + 16 * H - 1), JAN_1 + 16 * H);
        assert_eq!(next_midnight(JAN_1 + 16 * H), JAN_1 + 40 * H);
    }
}
