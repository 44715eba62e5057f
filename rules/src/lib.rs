//! WeChat's message rules, in one place.
//!
//! This crate is the single source of truth for the value rules of WeChat notifications. The
//! guest component uses it to reject a message before spending an API call on it; our WeChat
//! API sandbox uses it to answer the way WeChat would. Keeping both on the same code means a
//! message the sandbox accepts is one the guest believes valid, and vice versa.
//!
//! - [`validate_keyword`]: the mini-program **subscribe message** rules (`subscribeMessage.send`
//!   and the OA subscribe notification `bizsend`), per keyword type ([`KeywordType`]). WeChat
//!   rejects a violating value with errcode 47003; [`KeywordError`] displays the same detail.
//! - [`template_display`]: how an official-account **template message** value is shown since
//!   2023-05-04. WeChat does not reject these values; it strips line breaks and cuts them to
//!   [`TEMPLATE_VALUE_MAX_CHARS`] characters.
//!
//! Beside the message rules, the other platform facts more than one crate needs: WeChat's day
//! ([`china_time`]: quotas reset at 00:00 UTC+8), which URL parameters are credentials
//! ([`credentials`]), what errcodes mean ([`errcodes`]), and the configuration keys of the
//! component ([`config_keys`]).
//!
//! The crate has no dependencies and performs no I/O, so it builds for `wasm32-wasip2` as well
//! as natively.
//!
//! # Counting
//!
//! Lengths are Unicode scalar values (`str::chars`): a Chinese character, a letter, a digit and
//! a punctuation mark each count as one. WeChat does not say whether it counts runs of Latin
//! letters or digits as one character in template messages; we assume not, which can only
//! over-report truncation.
//!
//! # Character classes
//!
//! WeChat describes its rules in words. These are the exact sets this crate uses for them:
//!
//! - **Chinese character**: Han ideographs. CJK Unified Ideographs U+4E00–U+9FFF; Extension A
//!   U+3400–U+4DBF; Extensions B–J (U+20000–U+2A6DF, U+2A700–U+2EE5F, U+30000–U+3347F); CJK
//!   Compatibility Ideographs U+F900–U+FAFF and U+2F800–U+2FA1F; and U+3007 `〇`.
//! - **letter**: ASCII `A`–`Z`, `a`–`z`.
//! - **digit**: ASCII `0`–`9`.
//! - **symbol**: a visible punctuation mark or sign, never whitespace or a control character:
//!   ASCII punctuation (`!"#$%&'()*+,-./:;<=>?@[\]^_{|}~` and backquote); Latin-1 U+00A1–U+00BF
//!   except the soft hyphen U+00AD, plus `×` and `÷`; General Punctuation U+2010–U+2027 and
//!   U+2030–U+205E (dashes, curly quotes, `…`, `‰`, `※`); Currency Symbols U+20A0–U+20C0;
//!   `℃ ℉ № ™`; Arrows U+2190–U+21FF; Mathematical Operators U+2200–U+22FF; Geometric Shapes
//!   U+25A0–U+25FF; `★ ☆`; CJK punctuation U+3001–U+3003 and U+3008–U+301F (`、。〃《》「」【】〜`…);
//!   `・` U+30FB; full-width punctuation U+FF01–U+FF0F, U+FF1A–U+FF20, U+FF3B–U+FF40,
//!   U+FF5B–U+FF65; full-width signs U+FFE0–U+FFE6 (`￥`…). Emoji are not symbols.
//! - **space**: U+0020 and the ideographic space U+3000; allowed only in `thing` and `name`.
//! - **forbidden everywhere**: control characters (`char::is_control`, which covers CR, LF,
//!   TAB and NEL), the line and paragraph separators U+2028/U+2029, and the bidirectional
//!   controls U+202A–U+202E and U+2066–U+2069.
//! - **currency symbol** (`amount`): `$ ¢ £ ¤ ¥`, Currency Symbols U+20A0–U+20C0, and the
//!   full-width `＄ ￠ ￡ ￥ ￦`.
//!
//! # Rules per keyword type
//!
//! | type | rule |
//! |---|---|
//! | `thing` | ≤ 20 characters: Chinese, letters or digits of any script (`char::is_alphanumeric`), symbols, spaces |
//! | `number` | ≤ 32 characters: `digits[.digits]` |
//! | `letter` | ≤ 32 letters |
//! | `symbol` | ≤ 5 symbols |
//! | `character_string` | ≤ 32 digits, letters and symbols |
//! | `time` | 24-hour time (`15:01`, `9:05:30`), optionally after a date; a range joins two with `~` (or `～`) |
//! | `date` | a date (`2019年10月1日`, `10月1日`, `2019-10-01`, `2019/10/01`), optionally followed by a time; ranges as for `time` |
//! | `amount` | one currency symbol + `digits[.digits]` with ≤ 10 digits, optionally ending with `元`; or `digits[.digits]元` |
//! | `phone_number` | ≤ 17 digits and symbols |
//! | `car_number` | ≤ 8 characters; Chinese only first and last, letters and digits in between |
//! | `name` | ≤ 20 letters, symbols and spaces; with any Chinese character, ≤ 10 characters in all |
//! | `phrase` | ≤ 5 Chinese characters only |
//! | `enum` | any value (the allowed list is per template and not known here) |
//!
//! Every type rejects empty and whitespace-only values and the forbidden characters above. The
//! exact `time`/`date` grammar: a date is `YYYY年M月D日`, `M月D日` or `YYYY-M-D` / `YYYY/M/D`
//! (same separator twice, month and day one or two digits), a time `H:MM` or `H:MM:SS`
//! (hour 0–23), separated by spaces (optional after `日`); calendar dates are checked, leap
//! years included. In a `date` range starting with a time, the end may be a bare time
//! (`2019-10-01 15:01~16:00`).
//!
//! Where WeChat's wording leaves room (spaces in names, which symbols count), the rules lean
//! towards accepting: a value we wrongly reject can never be sent, while one WeChat rejects
//! still fails visibly with 47003.
#![deny(missing_docs)]

mod chars;
pub mod china_time;
pub mod config_keys;
pub mod credentials;
mod datetime;
mod display;
pub mod errcodes;
mod error;
mod keyword;

pub use display::{TEMPLATE_VALUE_MAX_CHARS, TemplateDisplay, template_display};
pub use error::{KeywordError, KeywordErrorKind};
pub use keyword::{KeywordType, validate_keyword};
