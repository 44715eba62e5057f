//! How official-account template message values are displayed since 2023-05-04.

use crate::chars::is_line_break;

/// The most characters (Unicode scalar values) an official-account template message shows per
/// field since the 2023-05-04 rule; longer values are cut and end with `…`.
pub const TEMPLATE_VALUE_MAX_CHARS: usize = 20;

const ELLIPSIS: char = '…';

/// A template message value as the recipient sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TemplateDisplay {
    /// The displayed text: at most [`TEMPLATE_VALUE_MAX_CHARS`] characters, plus `…` when cut.
    pub text: String,
    /// Whether `text` differs from the value sent (a line break removed or the value cut), i.e.
    /// the recipient does not see what the sender wrote.
    pub truncated: bool,
}

/// What an official-account template message shows for `value` (§4.1 of our WeChat notes).
///
/// Since 2023-05-04 WeChat does not reject such values; it silently rewrites them:
///
/// - Line breaks are removed entirely, not replaced by a space, because that is what the
///   platform does: `a\nb` shows as `ab`. Every mandatory line break counts (CR, LF, VT, FF,
///   NEL, U+2028, U+2029), so a CRLF pair disappears as a whole.
/// - What remains is cut to [`TEMPLATE_VALUE_MAX_CHARS`] characters followed by `…` (so a cut
///   value shows 21 characters). Characters are Unicode scalar values: a Chinese character,
///   a letter and a digit each count as one.
///
/// Emoji, which the platform also strips, are kept: WeChat does not say which code points it
/// treats as emoji, and guessing wrong would misreport ordinary symbols.
pub fn template_display(value: &str) -> TemplateDisplay {
    // A displayed value never needs more than 20 four-byte characters and the ellipsis.
    let cap = TEMPLATE_VALUE_MAX_CHARS * 4 + ELLIPSIS.len_utf8();
    let mut text = String::with_capacity(value.len().min(cap));
    let mut shown = 0;
    let mut truncated = false;
    for c in value.chars() {
        if is_line_break(c) {
            truncated = true;
        } else if shown == TEMPLATE_VALUE_MAX_CHARS {
            text.push(ELLIPSIS);
            truncated = true;
            break;
        } else {
            text.push(c);
            shown += 1;
        }
    }
    TemplateDisplay { text, truncated }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(value: &str) -> (String, bool) {
        let d = template_display(value);
        (d.text, d.truncated)
    }

    #[test]
    fn short_values_are_unchanged() {
        assert_eq!(shown(""), (String::new(), false));
        assert_eq!(shown("配送中"), ("配送中".to_owned(), false));
        let twenty = "abcdefghijklmnopqrst";
        assert_eq!(shown(twenty), (twenty.to_owned(), false));
    }

    #[test]
    fn long_values_are_cut_to_twenty_plus_ellipsis() {
        assert_eq!(
            shown("abcdefghijklmnopqrstu"),
            ("abcdefghijklmnopqrst…".to_owned(), true)
        );
        let long = "a".repeat(1000);
        let d = template_display(&long);
        assert_eq!(d.text.chars().count(), 21);
        assert!(d.truncated);
    }

    #[test]
    fn chinese_counts_characters_not_bytes() {
        // 20 Chinese characters are 60 bytes but exactly the limit.
        let twenty = "一二三四五六七八九十一二三四五六七八九十";
        assert_eq!(twenty.chars().count(), 20);
        assert_eq!(shown(twenty), (twenty.to_owned(), false));
        let twenty_one = format!("{twenty}零");
        assert_eq!(shown(&twenty_one), (format!("{twenty}…"), true));
        // Mixed scripts, one character each.
        assert_eq!(
            shown("订单A1号已发货，预计明天12:00前送达请注意查收"),
            ("订单A1号已发货，预计明天12:00前送…".to_owned(), true)
        );
    }

    #[test]
    fn line_breaks_are_removed() {
        assert_eq!(shown("a\nb"), ("ab".to_owned(), true));
        assert_eq!(shown("第一行\r\n第二行"), ("第一行第二行".to_owned(), true));
        assert_eq!(shown("\n"), (String::new(), true));
        assert_eq!(shown("a\u{2028}b\u{85}c"), ("abc".to_owned(), true));
        // Spaces and tabs are not line breaks.
        assert_eq!(shown("a b\tc"), ("a b\tc".to_owned(), false));
    }

    #[test]
    fn line_breaks_do_not_count_towards_the_limit() {
        let value = "abcdefghij\nklmnopqrst";
        assert_eq!(shown(value), ("abcdefghijklmnopqrst".to_owned(), true));
        let value = "abcdefghijklmnopqrst\n";
        assert_eq!(shown(value), ("abcdefghijklmnopqrst".to_owned(), true));
        let value = "abcdefghij\nklmnopqrstu";
        assert_eq!(shown(value), ("abcdefghijklmnopqrst…".to_owned(), true));
    }
}
