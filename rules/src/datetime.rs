//! Recogniser for the `time` and `date` keyword formats.
//!
//! Grammar (spaces are ASCII spaces):
//!
//! ```text
//! value  = point [ " "* ("~" | "～") " "* point ]
//! point  = date [ " "* clock ] | clock            -- the space may only be omitted after 日
//! date   = YYYY "年" M "月" D "日" | M "月" D "日" | YYYY ("-" | "/") M ("-" | "/") D
//! clock  = H ":" MM [ ":" SS ]
//! ```
//!
//! `M`, `D` and `H` take one or two digits, `MM`/`SS` exactly two, `YYYY` exactly four; the
//! two separators of a numeric date must be the same. Calendar and clock values are checked
//! (month 1–12, day within the month with Gregorian leap years, hour 0–23, minute and
//! second 0–59).

/// What one side of a range contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Point {
    pub(crate) has_date: bool,
    pub(crate) has_clock: bool,
}

/// Splits `value` into one or two points; `None` when it is malformed.
pub(crate) fn parse(value: &str) -> Option<(Point, Option<Point>)> {
    let mut sides = value.split(['~', '～']);
    let first = parse_point(sides.next()?.trim_matches(' '))?;
    let second = match sides.next() {
        Some(side) => Some(parse_point(side.trim_matches(' '))?),
        None => None,
    };
    if sides.next().is_some() {
        return None;
    }
    Some((first, second))
}

fn parse_point(s: &str) -> Option<Point> {
    let (lead, rest) = split_digits(s);
    if rest.starts_with(':') {
        clock(s)?;
        return Some(Point {
            has_date: false,
            has_clock: true,
        });
    }
    let rest = date(lead, rest)?;
    let after_date = rest.trim_start_matches(' ');
    if after_date.is_empty() {
        return Some(Point {
            has_date: true,
            has_clock: false,
        });
    }
    // A numeric date runs straight into the hour otherwise ("2019-10-0115:01").
    if after_date.len() == rest.len() && !s[..s.len() - rest.len()].ends_with('日') {
        return None;
    }
    clock(after_date)?;
    Some(Point {
        has_date: true,
        has_clock: true,
    })
}

/// Parses a date whose leading digit run `lead` has already been split off; returns what
/// follows the date.
fn date<'a>(lead: &str, rest: &'a str) -> Option<&'a str> {
    let (year, month, day, rest) = if let Some(rest) = rest.strip_prefix('年') {
        let year = number(lead, 4, 4)?;
        let (month, rest) = field(rest, '月')?;
        let (day, rest) = field(rest, '日')?;
        (Some(year), month, day, rest)
    } else if let Some(rest) = rest.strip_prefix('月') {
        let month = number(lead, 1, 2)?;
        let (day, rest) = field(rest, '日')?;
        (None, month, day, rest)
    } else {
        let sep = rest.chars().next().filter(|c| matches!(c, '-' | '/'))?;
        let year = number(lead, 4, 4)?;
        let (month, rest) = field(&rest[1..], sep)?;
        let (day_digits, rest) = split_digits(rest);
        (Some(year), month, number(day_digits, 1, 2)?, rest)
    };
    let valid = (1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month);
    valid.then_some(rest)
}

/// `H:MM` or `H:MM:SS`, covering all of `s`.
fn clock(s: &str) -> Option<()> {
    let (hour, rest) = field(s, ':')?;
    let (minute, rest) = split_digits(rest);
    let minute = number(minute, 2, 2)?;
    let second = match rest.strip_prefix(':') {
        Some(sec) => number(sec, 2, 2)?,
        None if rest.is_empty() => 0,
        None => return None,
    };
    (hour <= 23 && minute <= 59 && second <= 59).then_some(())
}

/// A run of one or two digits followed by `terminator`; returns the number and what follows.
fn field(s: &str, terminator: char) -> Option<(u32, &str)> {
    let (digits, rest) = split_digits(s);
    let rest = rest.strip_prefix(terminator)?;
    Some((number(digits, 1, 2)?, rest))
}

/// `digits` as a number if it has between `min` and `max` ASCII digits (and nothing else).
fn number(digits: &str, min: usize, max: usize) -> Option<u32> {
    if digits.len() < min || digits.len() > max || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // At most four digits, so this cannot overflow.
    Some(digits.bytes().fold(0, |n, b| n * 10 + u32::from(b - b'0')))
}

fn split_digits(s: &str) -> (&str, &str) {
    let end = s
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    s.split_at(end)
}

/// Days in `month` (1–12); without a year February may have 29 days.
fn days_in_month(year: Option<u32>, month: u32) -> u32 {
    match month {
        2 => match year {
            Some(y) if !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)) => 28,
            _ => 29,
        },
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: Point = Point {
        has_date: true,
        has_clock: false,
    };
    const CLOCK: Point = Point {
        has_date: false,
        has_clock: true,
    };
    const BOTH: Point = Point {
        has_date: true,
        has_clock: true,
    };

    #[test]
    fn points() {
        for (s, p) in [
            ("15:01", CLOCK),
            ("9:05", CLOCK),
            ("00:00:59", CLOCK),
            ("23:59", CLOCK),
            ("2019年10月1日", DATE),
            ("10月1日", DATE),
            ("2019-10-01", DATE),
            ("2019/1/1", DATE),
            ("2020-02-29", DATE),
            ("2019年10月1日 15:01", BOTH),
            ("2019年10月1日15:01", BOTH),
            ("2019-10-01 15:01", BOTH),
            ("2019-10-01  15:01:30", BOTH),
        ] {
            assert_eq!(parse(s), Some((p, None)), "{s}");
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(parse("15:01~16:00"), Some((CLOCK, Some(CLOCK))));
        assert_eq!(parse("15:01 ～ 16:00"), Some((CLOCK, Some(CLOCK))));
        assert_eq!(parse("2019-10-01 15:01~16:00"), Some((BOTH, Some(CLOCK))));
        assert_eq!(
            parse("2019年10月1日~2019年10月7日"),
            Some((DATE, Some(DATE)))
        );
    }

    #[test]
    fn rejects() {
        for s in [
            "",
            "~",
            "15:01~",
            "15:01~16:00~17:00",
            "24:00",
            "15:60",
            "15:1",
            "015:01",
            "15:01:60",
            "15:01:",
            "1501",
            "15.01",
            "2019-13-01",
            "2019-02-29",
            "1900-02-29",
            "2019-04-31",
            "2019-10-00",
            "19-10-01",
            "2019-10/01",
            "2019-10-0115:01",
            "2019年10月1",
            "2019年10月1日 25:00",
            "2019年10月32日",
            "tomorrow",
            "15:01pm",
            "１５:01",
        ] {
            assert_eq!(parse(s), None, "{s:?}");
        }
    }
}
