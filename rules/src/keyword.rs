//! Keyword types of subscribe-message templates and the per-type value rules.

use std::fmt;

use crate::chars::{
    is_chinese, is_currency, is_digit, is_forbidden, is_letter, is_space, is_symbol,
};
use crate::datetime;
use crate::error::{KeywordError, KeywordErrorKind};

/// The type of a subscribe-message template keyword, the `{type}` part of a key such as
/// `thing1` (WeChat writes it `thing.DATA` in template definitions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeywordType {
    /// `thing`: up to 20 characters of free text.
    Thing,
    /// `number`: up to 32 characters of digits, decimals allowed.
    Number,
    /// `letter`: up to 32 letters.
    Letter,
    /// `symbol`: up to 5 symbols.
    Symbol,
    /// `character_string`: up to 32 digits, letters and symbols.
    CharacterString,
    /// `time`: a 24-hour time, optionally after a date, or a range of them.
    Time,
    /// `date`: a date, optionally followed by a time, or a range of them.
    Date,
    /// `amount`: a currency symbol and up to 10 digits, optionally ending with `元`.
    Amount,
    /// `phone_number`: up to 17 digits and symbols.
    PhoneNumber,
    /// `car_number`: a plate of up to 8 characters.
    CarNumber,
    /// `name`: up to 10 Chinese characters or 20 letters and symbols.
    Name,
    /// `phrase`: up to 5 Chinese characters.
    Phrase,
    /// `enum`: one of the values listed in the template (not known here).
    Enum,
}

impl KeywordType {
    /// Every keyword type, in WeChat's table order.
    pub const ALL: [KeywordType; 13] = [
        Self::Thing,
        Self::Number,
        Self::Letter,
        Self::Symbol,
        Self::CharacterString,
        Self::Time,
        Self::Date,
        Self::Amount,
        Self::PhoneNumber,
        Self::CarNumber,
        Self::Name,
        Self::Phrase,
        Self::Enum,
    ];

    /// The type of a template keyword key of the form `{type}{digits}`, e.g. `thing1`,
    /// `character_string12`, `phone_number3`.
    ///
    /// `None` when the type is unknown or the numeric suffix is missing: WeChat's keys always
    /// carry one, so a bare `thing` is more likely a mistake than a keyword.
    pub fn from_key(key: &str) -> Option<KeywordType> {
        let name = key.trim_end_matches(|c: char| c.is_ascii_digit());
        if name.len() == key.len() {
            return None;
        }
        Self::ALL.into_iter().find(|ty| ty.as_str() == name)
    }

    /// The type's name as WeChat spells it in keys, e.g. `character_string`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Thing => "thing",
            Self::Number => "number",
            Self::Letter => "letter",
            Self::Symbol => "symbol",
            Self::CharacterString => "character_string",
            Self::Time => "time",
            Self::Date => "date",
            Self::Amount => "amount",
            Self::PhoneNumber => "phone_number",
            Self::CarNumber => "car_number",
            Self::Name => "name",
            Self::Phrase => "phrase",
            Self::Enum => "enum",
        }
    }
}

impl fmt::Display for KeywordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks a subscribe-message keyword value against WeChat's rule for the key's type (the
/// official table of `subscribeMessage.send`, errcode 47003 on violation).
///
/// Lengths are counted in Unicode scalar values: every Chinese character, letter, digit and
/// punctuation mark counts as one. No type allows line breaks or control characters, and an
/// empty or whitespace-only value is always an error. The checks run in the order key type,
/// emptiness, forbidden characters, character classes, length, format, so the error names the
/// most basic problem. See the crate documentation for the exact character classes.
///
/// # Errors
///
/// A [`KeywordError`] naming the key and the broken rule.
pub fn validate_keyword(key: &str, value: &str) -> Result<(), KeywordError> {
    let Some(ty) = KeywordType::from_key(key) else {
        return Err(KeywordError::new(
            key,
            None,
            KeywordErrorKind::UnknownKeyType,
            "",
            None,
        ));
    };
    let check = Check { key, ty };
    if value.trim().is_empty() {
        return Err(check.error(KeywordErrorKind::Empty, ""));
    }
    if let Some(c) = value.chars().find(|&c| is_forbidden(c)) {
        return Err(check.invalid_char("line breaks and control characters are not allowed", c));
    }
    match ty {
        KeywordType::Thing => check.simple(
            value,
            |c| is_chinese(c) || c.is_alphanumeric() || is_symbol(c) || is_space(c),
            "thing allows Chinese characters, letters, digits, symbols and spaces",
            20,
            "characters",
        ),
        KeywordType::Number => {
            let count = check.chars(
                value,
                |c| is_digit(c) || c == '.',
                "number allows only digits and a decimal point",
            )?;
            check.max_len(count, 32, "characters")?;
            check.format(
                is_decimal(value),
                "number must be digits with an optional decimal part, e.g. 100 or 3.14",
            )
        }
        KeywordType::Letter => check.simple(
            value,
            is_letter,
            "letter allows only letters A-Z and a-z",
            32,
            "letters",
        ),
        KeywordType::Symbol => {
            check.simple(value, is_symbol, "symbol allows only symbols", 5, "symbols")
        }
        KeywordType::CharacterString => check.simple(
            value,
            |c| is_digit(c) || is_letter(c) || is_symbol(c),
            "character_string allows only digits, letters and symbols",
            32,
            "characters",
        ),
        KeywordType::Time | KeywordType::Date => check.date_time(value),
        KeywordType::Amount => check.amount(value),
        KeywordType::PhoneNumber => check.simple(
            value,
            |c| is_digit(c) || is_symbol(c),
            "phone_number allows only digits and symbols",
            17,
            "characters",
        ),
        KeywordType::CarNumber => check.car_number(value),
        KeywordType::Name => check.name(value),
        KeywordType::Phrase => check.simple(
            value,
            is_chinese,
            "phrase allows only Chinese characters",
            5,
            "Chinese characters",
        ),
        // The allowed values live in the template definition; anything else non-empty and
        // free of control characters may be on that list.
        KeywordType::Enum => Ok(()),
    }
}

/// The key being checked; builds errors without repeating it everywhere.
#[derive(Clone, Copy)]
struct Check<'a> {
    key: &'a str,
    ty: KeywordType,
}

impl Check<'_> {
    fn error(self, kind: KeywordErrorKind, rule: &'static str) -> KeywordError {
        KeywordError::new(self.key, Some(self.ty), kind, rule, None)
    }

    fn invalid_char(self, rule: &'static str, c: char) -> KeywordError {
        KeywordError::new(
            self.key,
            Some(self.ty),
            KeywordErrorKind::InvalidCharacters,
            rule,
            Some(c),
        )
    }

    /// Counts the characters of `value`, failing on the first one outside `allowed`.
    fn chars(
        self,
        value: &str,
        allowed: impl Fn(char) -> bool,
        rule: &'static str,
    ) -> Result<usize, KeywordError> {
        let mut count = 0;
        for c in value.chars() {
            if !allowed(c) {
                return Err(self.invalid_char(rule, c));
            }
            count += 1;
        }
        Ok(count)
    }

    fn max_len(self, actual: usize, max: usize, unit: &'static str) -> Result<(), KeywordError> {
        if actual > max {
            return Err(self.error(KeywordErrorKind::TooLong { max, actual }, unit));
        }
        Ok(())
    }

    fn format(self, ok: bool, rule: &'static str) -> Result<(), KeywordError> {
        if ok {
            Ok(())
        } else {
            Err(self.error(KeywordErrorKind::InvalidFormat, rule))
        }
    }

    /// A rule made only of a character class and a maximum length.
    fn simple(
        self,
        value: &str,
        allowed: impl Fn(char) -> bool,
        rule: &'static str,
        max: usize,
        unit: &'static str,
    ) -> Result<(), KeywordError> {
        let count = self.chars(value, allowed, rule)?;
        self.max_len(count, max, unit)
    }

    /// `time` and `date`. Every point of a `time` needs a clock and every point of a `date` a
    /// date, except that a `date` range that starts with a time may end with a bare time on
    /// the same day (`2019-10-01 15:01~16:00`).
    fn date_time(self, value: &str) -> Result<(), KeywordError> {
        let (ok, rule) = match (self.ty, datetime::parse(value)) {
            (KeywordType::Time, parsed) => (
                parsed.is_some_and(|(start, end)| {
                    start.has_clock && end.is_none_or(|end| end.has_clock)
                }),
                "time must be a 24-hour time such as 15:01, optionally after a date \
                 (2019年10月1日 15:01, 2019-10-01 15:01), or two of them joined with ~",
            ),
            (_, parsed) => (
                parsed.is_some_and(|(start, end)| {
                    start.has_date
                        && end.is_none_or(|end| end.has_date || (start.has_clock && end.has_clock))
                }),
                "date must be a date such as 2019年10月1日 or 2019-10-01, optionally followed \
                 by a 24-hour time, or two of them joined with ~",
            ),
        };
        self.format(ok, rule)
    }

    /// `amount`: currency symbol + up to 10 digits (decimals allowed) + optional `元`; a bare
    /// number must then end with `元`, otherwise nothing says it is money.
    fn amount(self, value: &str) -> Result<(), KeywordError> {
        let (number, has_yuan) = match value.strip_suffix('元') {
            Some(rest) => (rest, true),
            None => (value, false),
        };
        let mut chars = number.chars();
        let has_symbol = chars.next().is_some_and(is_currency);
        let number = if has_symbol { chars.as_str() } else { number };
        self.chars(
            number,
            |c| is_digit(c) || c == '.',
            "amount allows one currency symbol, digits, a decimal point and a final 元",
        )?;
        let digits = number.bytes().filter(u8::is_ascii_digit).count();
        self.max_len(digits, 10, "digits")?;
        self.format(
            (has_symbol || has_yuan) && is_decimal(number),
            "amount must be one currency symbol followed by digits (decimals allowed), \
             optionally ending with 元, e.g. ¥100.00 or 100元",
        )
    }

    /// `car_number`: up to 8 characters; Chinese only first and last, letters and digits
    /// between.
    fn car_number(self, value: &str) -> Result<(), KeywordError> {
        let count = self.chars(
            value,
            |c| is_chinese(c) || is_letter(c) || is_digit(c),
            "car_number allows only Chinese characters, letters and digits",
        )?;
        self.max_len(count, 8, "characters")?;
        let mut inner = value.chars();
        inner.next();
        inner.next_back();
        self.format(
            !inner.any(is_chinese),
            "car_number allows Chinese characters only as its first and last character, \
             e.g. 粤A8Z888挂",
        )
    }

    /// `name`: letters and symbols (≤ 20), or Chinese (≤ 10) — a name with any Chinese
    /// character is held to the Chinese limit. Spaces are accepted so that Western names
    /// (`John Smith`) pass; digits are not part of a name.
    fn name(self, value: &str) -> Result<(), KeywordError> {
        let count = self.chars(
            value,
            |c| is_chinese(c) || is_letter(c) || is_symbol(c) || is_space(c),
            "name allows only Chinese characters, letters, symbols and spaces",
        )?;
        if value.chars().any(is_chinese) {
            self.max_len(count, 10, "characters when it contains Chinese")
        } else {
            self.max_len(count, 20, "letters or symbols")
        }
    }
}

/// `digits [ "." digits ]`.
fn is_decimal(s: &str) -> bool {
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    match s.split_once('.') {
        Some((int, frac)) => all_digits(int) && all_digits(frac),
        None => all_digits(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use KeywordErrorKind::{Empty, InvalidCharacters, InvalidFormat, TooLong, UnknownKeyType};

    const fn too_long(max: usize, actual: usize) -> Option<KeywordErrorKind> {
        Some(TooLong { max, actual })
    }

    #[test]
    fn from_key() {
        for (key, ty) in [
            ("thing1", KeywordType::Thing),
            ("thing01", KeywordType::Thing),
            ("number2", KeywordType::Number),
            ("letter3", KeywordType::Letter),
            ("symbol4", KeywordType::Symbol),
            ("character_string12", KeywordType::CharacterString),
            ("time5", KeywordType::Time),
            ("date6", KeywordType::Date),
            ("amount7", KeywordType::Amount),
            ("phone_number3", KeywordType::PhoneNumber),
            ("car_number8", KeywordType::CarNumber),
            ("name9", KeywordType::Name),
            ("phrase10", KeywordType::Phrase),
            ("enum11", KeywordType::Enum),
        ] {
            assert_eq!(KeywordType::from_key(key), Some(ty), "{key}");
        }
        for key in [
            "",
            "1",
            "thing",
            "Thing1",
            "thing1a",
            "things1",
            "character1",
            "string1",
            "thing_1",
            " thing1",
            "thing.DATA",
            "first",
            "remark",
            "keyword1",
        ] {
            assert_eq!(KeywordType::from_key(key), None, "{key:?}");
        }
        for ty in KeywordType::ALL {
            assert_eq!(KeywordType::from_key(&format!("{ty}1")), Some(ty));
        }
    }

    /// (key, value, expected error kind or None for valid). Valid examples come from the
    /// official table where it gives one.
    const CASES: &[(&str, &str, Option<KeywordErrorKind>)] = &[
        // Every type rejects an empty or blank value.
        ("thing1", "", Some(Empty)),
        ("thing1", "   ", Some(Empty)),
        ("thing1", "\u{3000}", Some(Empty)),
        ("number1", "", Some(Empty)),
        ("letter1", "", Some(Empty)),
        ("symbol1", "", Some(Empty)),
        ("character_string1", "", Some(Empty)),
        ("time1", "", Some(Empty)),
        ("date1", "", Some(Empty)),
        ("amount1", "", Some(Empty)),
        ("phone_number1", "", Some(Empty)),
        ("car_number1", "", Some(Empty)),
        ("name1", "", Some(Empty)),
        ("phrase1", "", Some(Empty)),
        ("enum1", "", Some(Empty)),
        // The key type is checked before the value.
        ("foo1", "x", Some(UnknownKeyType)),
        ("thing", "x", Some(UnknownKeyType)),
        ("keyword1", "", Some(UnknownKeyType)),
        // thing: ≤ 20 characters of Chinese, letters, digits, symbols.
        ("thing1", "订单已发货", None),
        ("thing1", "Order #123 shipped!", None),
        ("thing1", "您的订单（A-123）已发货，请查收。", None),
        ("thing1", "二十个字二十个字二十个字二十个字二十个字", None),
        (
            "thing1",
            "二十一个字二十个字二十个字二十个字二十个字",
            too_long(20, 21),
        ),
        ("thing1", "abcdefghijklmnopqrstu", too_long(20, 21)),
        ("thing1", "Café ｱｲ 한글", None),
        ("thing1", "订单\n已发货", Some(InvalidCharacters)),
        ("thing1", "订单\r已发货", Some(InvalidCharacters)),
        ("thing1", "订单\t已发货", Some(InvalidCharacters)),
        ("thing1", "订单\u{2028}已发货", Some(InvalidCharacters)),
        ("thing1", "good\u{202E}evil", Some(InvalidCharacters)),
        ("thing1", "好评😀", Some(InvalidCharacters)),
        // number: ≤ 32, digits, decimals allowed.
        ("number1", "12345", None),
        ("number1", "3.14", None),
        ("number1", "0", None),
        ("number1", "12345678901234567890123456789012", None),
        (
            "number1",
            "123456789012345678901234567890123",
            too_long(32, 33),
        ),
        ("number1", "1,000", Some(InvalidCharacters)),
        ("number1", "-5", Some(InvalidCharacters)),
        ("number1", "12a", Some(InvalidCharacters)),
        ("number1", "一二三", Some(InvalidCharacters)),
        ("number1", "1.2.3", Some(InvalidFormat)),
        ("number1", ".5", Some(InvalidFormat)),
        ("number1", "5.", Some(InvalidFormat)),
        ("number1", ".", Some(InvalidFormat)),
        // letter: ≤ 32 letters only.
        ("letter1", "abcXYZ", None),
        ("letter1", "abcdefghijklmnopqrstuvwxyzABCDEF", None),
        (
            "letter1",
            "abcdefghijklmnopqrstuvwxyzABCDEFG",
            too_long(32, 33),
        ),
        ("letter1", "abc1", Some(InvalidCharacters)),
        ("letter1", "ab cd", Some(InvalidCharacters)),
        ("letter1", "ab-cd", Some(InvalidCharacters)),
        ("letter1", "Café", Some(InvalidCharacters)),
        ("letter1", "中文", Some(InvalidCharacters)),
        // symbol: ≤ 5 symbols only.
        ("symbol1", "+-*/", None),
        ("symbol1", "《》！？…", None),
        ("symbol1", "¥%", None),
        ("symbol1", "!@#$%^", too_long(5, 6)),
        ("symbol1", "a!", Some(InvalidCharacters)),
        ("symbol1", "1", Some(InvalidCharacters)),
        ("symbol1", "! !", Some(InvalidCharacters)),
        ("symbol1", "😀", Some(InvalidCharacters)),
        // character_string: ≤ 32 digits, letters, symbols.
        ("character_string1", "SF1234567890", None),
        ("character_string1", "ORDER-2024_01/05#7", None),
        (
            "character_string1",
            "12345678901234567890123456789012",
            None,
        ),
        (
            "character_string1",
            "123456789012345678901234567890123",
            too_long(32, 33),
        ),
        ("character_string1", "订单123", Some(InvalidCharacters)),
        ("character_string1", "AB 12", Some(InvalidCharacters)),
        // time: 24-hour time, optional date prefix, ranges with ~.
        ("time1", "15:01", None),
        ("time1", "9:05", None),
        ("time1", "15:01:30", None),
        ("time1", "2019年10月1日 15:01", None),
        ("time1", "2019年10月1日15:01", None),
        ("time1", "2019-10-01 15:01", None),
        ("time1", "2019/10/01 15:01", None),
        ("time1", "15:01~16:00", None),
        ("time1", "15:01 ~ 16:00", None),
        ("time1", "2019-10-01 15:01~2019-10-02 09:00", None),
        ("time1", "2019-10-01 15:01~16:00", None),
        ("time1", "2019年10月1日", Some(InvalidFormat)),
        ("time1", "2019-10-01", Some(InvalidFormat)),
        ("time1", "15:01~2019-10-02", Some(InvalidFormat)),
        ("time1", "25:00", Some(InvalidFormat)),
        ("time1", "24:00", Some(InvalidFormat)),
        ("time1", "15:61", Some(InvalidFormat)),
        ("time1", "3pm", Some(InvalidFormat)),
        ("time1", "15:01~", Some(InvalidFormat)),
        ("time1", "15:01\n16:00", Some(InvalidCharacters)),
        // date: date, optional time suffix, ranges with ~.
        ("date1", "2019年10月1日", None),
        ("date1", "10月1日", None),
        ("date1", "2019-10-01", None),
        ("date1", "2019/10/1", None),
        ("date1", "2019-10-01 15:01", None),
        ("date1", "2019年10月1日 15:01", None),
        ("date1", "2019-12-25 09:42", None),
        ("date1", "2019年10月1日~2019年10月7日", None),
        ("date1", "2019-10-01 ~ 2019-10-07", None),
        ("date1", "2019-10-01 15:01~16:00", None),
        ("date1", "2024-02-29", None),
        ("date1", "15:01", Some(InvalidFormat)),
        ("date1", "2019-10-01~16:00", Some(InvalidFormat)),
        ("date1", "2019-02-29", Some(InvalidFormat)),
        ("date1", "2019-13-01", Some(InvalidFormat)),
        ("date1", "2019-10-32", Some(InvalidFormat)),
        ("date1", "2019.10.01", Some(InvalidFormat)),
        ("date1", "20191001", Some(InvalidFormat)),
        ("date1", "明天", Some(InvalidFormat)),
        // amount: one currency symbol + ≤ 10 digits, decimals allowed, optional 元.
        ("amount1", "¥100.00", None),
        ("amount1", "￥100.00", None),
        ("amount1", "$9.99", None),
        ("amount1", "€5", None),
        ("amount1", "100元", None),
        ("amount1", "100.50元", None),
        ("amount1", "¥100元", None),
        ("amount1", "¥1234567890", None),
        ("amount1", "¥12345678.90", None),
        ("amount1", "¥12345678901", too_long(10, 11)),
        ("amount1", "¥123456789.01", too_long(10, 11)),
        ("amount1", "100", Some(InvalidFormat)),
        ("amount1", "¥", Some(InvalidFormat)),
        ("amount1", "元", Some(InvalidFormat)),
        ("amount1", "¥1.2.3", Some(InvalidFormat)),
        ("amount1", "¥¥100", Some(InvalidCharacters)),
        ("amount1", "¥1,000", Some(InvalidCharacters)),
        ("amount1", "¥ 100", Some(InvalidCharacters)),
        ("amount1", "-¥100", Some(InvalidCharacters)),
        ("amount1", "100元整", Some(InvalidCharacters)),
        ("amount1", "100美元", Some(InvalidCharacters)),
        // phone_number: ≤ 17 digits and symbols.
        ("phone_number1", "+86-0766-66888866", None),
        ("phone_number1", "13800138000", None),
        ("phone_number1", "(020)12345678", None),
        ("phone_number1", "+86-0766-668888666", too_long(17, 18)),
        ("phone_number1", "400-ABC", Some(InvalidCharacters)),
        ("phone_number1", "138 0013 8000", Some(InvalidCharacters)),
        // car_number: ≤ 8, Chinese only first/last, letters/digits between.
        ("car_number1", "粤A8Z888挂", None),
        ("car_number1", "京A12345", None),
        ("car_number1", "京AD12345", None),
        ("car_number1", "A12345", None),
        ("car_number1", "粤A8Z8888挂", too_long(8, 9)),
        ("car_number1", "粤A中888挂", Some(InvalidFormat)),
        ("car_number1", "粤A-8Z888", Some(InvalidCharacters)),
        ("car_number1", "粤A 8Z888", Some(InvalidCharacters)),
        // name: ≤ 10 Chinese, or ≤ 20 letters/symbols; mixed counts as Chinese.
        ("name1", "张三", None),
        ("name1", "订阅", None),
        ("name1", "阿卜杜热合曼·买买提", None),
        ("name1", "John Smith", None),
        ("name1", "O'Neil-Smith", None),
        ("name1", "Abcdefghijklmnopqrst", None),
        ("name1", "Abcdefghijklmnopqrstu", too_long(20, 21)),
        ("name1", "一二三四五六七八九十", None),
        ("name1", "一二三四五六七八九十一", too_long(10, 11)),
        ("name1", "张San", None),
        ("name1", "张Sanabcdefg", too_long(10, 11)),
        ("name1", "张三3", Some(InvalidCharacters)),
        ("name1", "Agent007", Some(InvalidCharacters)),
        // phrase: ≤ 5 Chinese characters only.
        ("phrase1", "配送中", None),
        ("phrase1", "审核通过", None),
        ("phrase1", "五个汉字啊", None),
        ("phrase1", "六个汉字啊啊", too_long(5, 6)),
        ("phrase1", "配送中!", Some(InvalidCharacters)),
        ("phrase1", "配送 中", Some(InvalidCharacters)),
        ("phrase1", "OK", Some(InvalidCharacters)),
        ("phrase1", "1", Some(InvalidCharacters)),
        // enum: anything non-empty without control characters.
        ("enum1", "已完成", None),
        ("enum1", "any value at all, however long it may be 😀", None),
        ("enum1", "a\nb", Some(InvalidCharacters)),
    ];

    #[test]
    fn official_table() {
        for &(key, value, expected) in CASES {
            let got = validate_keyword(key, value);
            assert_eq!(
                got.as_ref().err().map(KeywordError::kind),
                expected,
                "{key} = {value:?}: {got:?}"
            );
            if let Err(err) = got {
                assert_eq!(err.key(), key);
                assert_eq!(err.is_empty(), expected == Some(Empty));
                let text = err.to_string();
                assert!(text.starts_with(&format!("data.{key}.value ")), "{text}");
                assert!(!text.contains('\n'), "{text}");
            }
        }
    }

    #[test]
    fn every_type_is_covered() {
        for ty in KeywordType::ALL {
            let key = format!("{ty}1");
            assert!(
                CASES.iter().any(|&(k, _, e)| k == key && e.is_none()),
                "{ty}: no valid case"
            );
            assert!(
                CASES
                    .iter()
                    .any(|&(k, _, e)| k == key && e.is_some() && e != Some(Empty)),
                "{ty}: no invalid case"
            );
        }
    }

    #[test]
    fn display_names_key_and_rule() {
        let msg = |key: &str, value: &str| validate_keyword(key, value).unwrap_err().to_string();
        assert_eq!(
            msg("phrase2", "六个汉字啊啊"),
            "data.phrase2.value invalid: phrase allows at most 5 Chinese characters, got 6"
        );
        assert_eq!(msg("thing1", ""), "data.thing1.value is empty");
        assert_eq!(
            msg("thing1", "一二三四五六七八九十一二三四五六七八九十一"),
            "data.thing1.value invalid: thing allows at most 20 characters, got 21"
        );
        assert_eq!(
            msg("amount3", "¥12345678901"),
            "data.amount3.value invalid: amount allows at most 10 digits, got 11"
        );
        assert_eq!(
            msg("phrase2", "OK"),
            "data.phrase2.value invalid: phrase allows only Chinese characters, found 'O'"
        );
        assert_eq!(
            msg("thing1", "a\nb"),
            "data.thing1.value invalid: line breaks and control characters are not allowed, \
             found '\\n'"
        );
        assert_eq!(
            msg("foo1", "x"),
            "data.foo1.value invalid: unknown keyword type in key \"foo1\""
        );
        assert!(msg("time4", "3pm").starts_with("data.time4.value invalid: time must be"));
        assert_eq!(
            msg("name1", "张Sanabcdefg"),
            "data.name1.value invalid: name allows at most 10 characters when it contains \
             Chinese, got 11"
        );
    }

    #[test]
    fn error_accessors() {
        let err = validate_keyword("car_number5", "粤A-8").unwrap_err();
        assert_eq!(err.kind(), InvalidCharacters);
        assert_eq!(err.offending_char(), Some('-'));
        assert_eq!(err.keyword_type(), Some(KeywordType::CarNumber));
        assert!(!err.is_empty());
        let err = validate_keyword("bogus1", "").unwrap_err();
        assert_eq!(err.keyword_type(), None);
        assert_eq!(err.offending_char(), None);
        let boxed: Box<dyn std::error::Error> = Box::new(err);
        assert!(boxed.to_string().contains("bogus1"));
    }

    #[test]
    fn never_panics_on_odd_input() {
        let odd = [
            "\u{0}",
            "~~",
            "～",
            "元元",
            "¥",
            "¥.",
            "年月日",
            "1年1月1日",
            "99999-1-1 1:00",
            "::",
            "2019-",
            "2019年",
            "\u{10FFFF}",
            "\u{FEFF}",
            "9999999999999999999:00",
        ];
        for ty in KeywordType::ALL {
            for value in odd {
                let _ = validate_keyword(&format!("{ty}1"), value);
            }
        }
    }
}
