//! Character classes shared by the keyword rules.
//!
//! WeChat publishes the rules in words ("Chinese", "letters", "symbols"), not as code-point
//! tables, so the sets below are our reading of them. Each set is documented at crate level
//! (see the crate docs, "Character classes") and must be kept in sync with that text.

/// A Chinese character: a Han ideograph.
///
/// CJK Unified Ideographs and all their extensions (A–J), the two compatibility-ideograph
/// blocks (canonically equivalent to unified ideographs, so some input methods produce them)
/// and U+3007 `〇`, which is Han script and appears in dates such as `二〇二四年`.
pub(crate) fn is_chinese(c: char) -> bool {
    matches!(c,
        '\u{4E00}'..='\u{9FFF}'       // CJK Unified Ideographs
        | '\u{3400}'..='\u{4DBF}'     // Extension A
        | '\u{20000}'..='\u{2A6DF}'   // Extension B
        | '\u{2A700}'..='\u{2EE5F}'   // Extensions C, D, E, F, I (contiguous)
        | '\u{30000}'..='\u{3347F}'   // Extensions G, H, J (contiguous)
        | '\u{F900}'..='\u{FAFF}'     // CJK Compatibility Ideographs
        | '\u{2F800}'..='\u{2FA1F}'   // CJK Compatibility Ideographs Supplement
        | '\u{3007}' // 〇
    )
}

/// A letter in the sense of the `letter`, `character_string`, `name` and `car_number` rules:
/// ASCII `A`–`Z` and `a`–`z`.
pub(crate) fn is_letter(c: char) -> bool {
    c.is_ascii_alphabetic()
}

/// A digit in the sense of the numeric rules: ASCII `0`–`9`.
pub(crate) fn is_digit(c: char) -> bool {
    c.is_ascii_digit()
}

/// A symbol: visible punctuation or sign, never a letter, digit, whitespace or control
/// character.
pub(crate) fn is_symbol(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(c,
            // Latin-1 signs and punctuation (¡ ¥ § © « ° ± · » ¿ …), minus the invisible
            // soft hyphen U+00AD, plus × and ÷.
            '\u{A1}'..='\u{AC}' | '\u{AE}'..='\u{BF}' | '\u{D7}' | '\u{F7}'
            // General Punctuation: dashes, curly quotes, • … ‰ ′ ″ ※ ‼. The gap at
            // U+2028..=U+202F keeps out line/paragraph separators, bidi controls and spaces;
            // the range ends before U+205F (a space) and the invisible operators.
            | '\u{2010}'..='\u{2027}' | '\u{2030}'..='\u{205E}'
            // Currency Symbols (€ ₩ ₹ ₽ …).
            | '\u{20A0}'..='\u{20C0}'
            // ℃ ℉ № ™, the letterlike symbols Chinese notifications actually use.
            | '\u{2103}' | '\u{2109}' | '\u{2116}' | '\u{2122}'
            // Arrows, mathematical operators (≤ ≥ ≠ ≈ ∞), geometric shapes (■ □ ▲ △ ● ○ ◆ ◇).
            | '\u{2190}'..='\u{21FF}' | '\u{2200}'..='\u{22FF}' | '\u{25A0}'..='\u{25FF}'
            // ★ ☆
            | '\u{2605}' | '\u{2606}'
            // CJK punctuation: 、 。 〃 and the brackets 〈 〉 《 》 「 」 『 』 【 】 〒 〓 〔 〕 … 〜 〝 〞 〟.
            // U+3000 (ideographic space) and U+3004..=U+3007 (〄 々 〆 〇) are not symbols.
            | '\u{3001}'..='\u{3003}' | '\u{3008}'..='\u{301F}'
            // ・ (katakana middle dot, used between the parts of transliterated names).
            | '\u{30FB}'
            // Full-width forms of the ASCII punctuation (！ ＃ （ ） ， ： ； ？ ［ ］ ｛ ｝ ～ …) and the
            // half-width CJK punctuation (｡ ｢ ｣ ､ ･).
            | '\u{FF01}'..='\u{FF0F}' | '\u{FF1A}'..='\u{FF20}' | '\u{FF3B}'..='\u{FF40}'
            | '\u{FF5B}'..='\u{FF65}'
            // Full-width signs ￠ ￡ ￢ ￣ ￤ ￥ ￦.
            | '\u{FFE0}'..='\u{FFE6}'
        )
}

/// A space allowed inside free text (`thing`, `name`): ASCII space and the ideographic space.
pub(crate) fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\u{3000}')
}

/// Characters no keyword value may contain, whatever its type.
///
/// Control characters (C0, DEL, C1, so also CR, LF, TAB and NEL), the Unicode line and
/// paragraph separators, and the bidirectional embedding/override/isolate controls, which
/// could make a notification display something other than what was validated.
pub(crate) fn is_forbidden(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A currency symbol accepted at the start of an `amount`.
pub(crate) fn is_currency(c: char) -> bool {
    matches!(c,
        '$' | '\u{A2}'..='\u{A5}'      // ¢ £ ¤ ¥
        | '\u{20A0}'..='\u{20C0}'      // Currency Symbols block (€ ₩ ₹ …)
        | '\u{FF04}'                   // ＄
        | '\u{FFE0}' | '\u{FFE1}' | '\u{FFE5}' | '\u{FFE6}' // ￠ ￡ ￥ ￦
    )
}

/// A mandatory line break (UAX #14 classes BK, CR, LF and NL): what a display strips.
pub(crate) fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r' | '\u{0B}' | '\u{0C}' | '\u{85}' | '\u{2028}' | '\u{2029}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese() {
        for c in "配送中粤挂〇㐀\u{20000}\u{2B740}\u{30000}\u{F900}".chars() {
            assert!(is_chinese(c), "{c:?}");
        }
        for c in "a1。あ한· \u{3000}".chars() {
            assert!(!is_chinese(c), "{c:?}");
        }
    }

    #[test]
    fn symbols() {
        for c in "+-.~`@¥·×—“”…€℃→≤●★、。《》【】・！，：（）～￥".chars()
        {
            assert!(is_symbol(c), "{c:?}");
        }
        for c in " \u{3000}\n\t\u{AD}\u{2028}\u{202E}\u{200B}a1中😀々〇".chars() {
            assert!(!is_symbol(c), "{c:?}");
        }
    }

    #[test]
    fn forbidden() {
        for c in "\n\r\t\0\u{7F}\u{85}\u{2028}\u{2029}\u{202E}\u{2066}".chars() {
            assert!(is_forbidden(c), "{c:?}");
        }
        for c in " a中\u{3000}😀\u{200D}".chars() {
            assert!(!is_forbidden(c), "{c:?}");
        }
    }

    #[test]
    fn currency() {
        for c in "$¥￥€£₩".chars() {
            assert!(is_currency(c), "{c:?}");
        }
        for c in "元1a%".chars() {
            assert!(!is_currency(c), "{c:?}");
        }
    }
}
