//! A notification as the WeCom markdown message the group sees: who it was for, and each
//! channel's template, values and jump targets, in the order the caller gave them.

use crate::error::Error;
use wxnotify_contract as wit;

/// WeCom refuses markdown content over 4096 bytes of UTF-8 (40058).
pub const MARKDOWN_MAX_BYTES: usize = 4096;

/// Ends content that was cut, so the group knows it is not seeing everything.
const CUT_MARKER: &str = "\n… (cut: over 4096 bytes)";

/// The markdown content to post and the parts of the notification that did not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub content: String,
    /// Keyword keys (and `url`, `miniprogram`, `page`, …) whose line was cut or left out.
    pub truncated: Vec<String>,
}

/// One line of content; `part` names what it shows when losing it matters to the caller.
struct Line {
    text: String,
    part: Option<String>,
}

impl Line {
    fn plain(text: String) -> Line {
        Line { text, part: None }
    }

    /// A quoted `label: value` line. A value's line breaks stay inside the quote block.
    fn field(part: &str, label: &str, value: &str) -> Line {
        Line {
            text: format!("> {label}: {}", value.replace('\n', "\n> ")),
            part: Some(part.to_owned()),
        }
    }
}

/// Renders `notification` and fits it into [`MARKDOWN_MAX_BYTES`].
pub fn render(notification: &wit::Notification) -> Result<Rendered, Error> {
    if notification.channels.is_empty() {
        return Err(Error::InvalidInput(
            "the notification has no channels: give at least one".into(),
        ));
    }
    let (kind, id) = recipient(&notification.recipient);
    let mut lines = vec![Line::plain(format!("**Notification for {kind} `{id}`**"))];
    if let Some(key) = &notification.idempotency_key {
        lines.push(Line::plain(format!(
            "<font color=\"comment\">idempotency key: {key}</font>"
        )));
    }
    for (index, channel) in notification.channels.iter().enumerate() {
        lines.push(Line::plain(String::new()));
        channel_lines(index + 1, channel, &mut lines);
    }
    Ok(fit(&lines, MARKDOWN_MAX_BYTES))
}

/// The recipient's identity kind, in words, and its id as given.
pub fn recipient(recipient: &wit::Recipient) -> (&'static str, &str) {
    match recipient {
        wit::Recipient::MiniProgram(id) => ("mini-program openid", id),
        wit::Recipient::OfficialAccount(id) => ("official-account openid", id),
        wit::Recipient::Union(id) => ("unionid", id),
    }
}

fn channel_lines(number: usize, channel: &wit::ChannelMessage, lines: &mut Vec<Line>) {
    let title = |kind: &str, template_id: &str| {
        Line::plain(format!("**{number}. {kind}** `{template_id}`"))
    };
    let data = |data: &wit::TemplateData, lines: &mut Vec<Line>| {
        lines.extend(data.iter().map(|(key, value)| Line::field(key, key, value)));
    };
    match channel {
        wit::ChannelMessage::TemplateMessage(message) => {
            lines.push(title("Template message", &message.template_id));
            data(&message.data, lines);
            jump_lines(message.url.as_deref(), message.miniprogram.as_ref(), lines);
        }
        wit::ChannelMessage::SubscribeMessage(message) => {
            lines.push(title("Subscribe message", &message.template_id));
            data(&message.data, lines);
            if let Some(page) = &message.page {
                lines.push(Line::field("page", "page", page));
            }
            if let Some(state) = message.miniprogram_state {
                let state = match state {
                    wit::MiniprogramState::Developer => "developer",
                    wit::MiniprogramState::Trial => "trial",
                    wit::MiniprogramState::Formal => "formal",
                };
                lines.push(Line::field("miniprogram_state", "version", state));
            }
            if let Some(lang) = &message.lang {
                lines.push(Line::field("lang", "lang", lang));
            }
        }
        wit::ChannelMessage::UniformLegacy(message) => {
            lines.push(title(
                "Template message (legacy uniform)",
                &message.template_id,
            ));
            if let Some(appid) = &message.appid {
                lines.push(Line::field("appid", "official account", appid));
            }
            data(&message.data, lines);
            jump_lines(message.url.as_deref(), message.miniprogram.as_ref(), lines);
        }
    }
}

fn jump_lines(url: Option<&str>, page: Option<&wit::MiniprogramPage>, lines: &mut Vec<Line>) {
    if let Some(url) = url {
        lines.push(Line::field("url", "url", url));
    }
    if let Some(page) = page {
        let shown = match &page.appid {
            Some(appid) => format!("{} (mini-program {appid})", page.pagepath),
            None => page.pagepath.clone(),
        };
        lines.push(Line::field("miniprogram", "mini-program page", &shown));
    }
}

/// Joins `lines`; over `max_bytes` the text is cut on a char boundary and marked, and every
/// part whose line did not fit whole is reported.
fn fit(lines: &[Line], max_bytes: usize) -> Rendered {
    let full = lines
        .iter()
        .map(|line| line.text.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    if full.len() <= max_bytes {
        return Rendered {
            content: full,
            truncated: Vec::new(),
        };
    }
    let cut = floor_char_boundary(&full, max_bytes - CUT_MARKER.len());
    let mut truncated: Vec<String> = Vec::new();
    let mut line_end = 0;
    for line in lines {
        line_end += line.text.len();
        if line_end > cut
            && let Some(part) = &line.part
            && !truncated.contains(part)
        {
            truncated.push(part.clone());
        }
        line_end += 1; // the newline joining it to the next line
    }
    Rendered {
        content: format!("{}{CUT_MARKER}", &full[..cut]),
        truncated,
    }
}

/// The largest index ≤ `index` that does not split a UTF-8 character of `text`.
fn floor_char_boundary(text: &str, index: usize) -> usize {
    (0..=index.min(text.len()))
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn template(data: &[(&str, &str)]) -> wit::ChannelMessage {
        wit::ChannelMessage::TemplateMessage(wit::TemplateMessage {
            template_id: "TPL_ORDER_SHIPPED".into(),
            data: pairs(data),
            url: Some("https://shop.example/orders/42".into()),
            miniprogram: Some(wit::MiniprogramPage {
                appid: None,
                pagepath: "pages/order/detail?id=42".into(),
            }),
        })
    }

    fn to_oa(channels: Vec<wit::ChannelMessage>) -> wit::Notification {
        wit::Notification {
            recipient: wit::Recipient::OfficialAccount("oa-openid-1".into()),
            channels,
            idempotency_key: None,
        }
    }

    #[test]
    fn shows_recipient_template_values_in_order_and_jumps() {
        let rendered = render(&to_oa(vec![
            template(&[("time3", "2024-05-01 10:00"), ("thing1", "Order shipped")]),
            wit::ChannelMessage::SubscribeMessage(wit::SubscribeMessage {
                template_id: "TPL_ORDER_STATUS".into(),
                data: pairs(&[("phrase2", "Shipped")]),
                page: Some("pages/index/index".into()),
                miniprogram_state: Some(wit::MiniprogramState::Trial),
                lang: None,
            }),
        ]))
        .unwrap();
        assert_eq!(
            rendered.content,
            "**Notification for official-account openid `oa-openid-1`**\n\
             \n\
             **1. Template message** `TPL_ORDER_SHIPPED`\n\
             > time3: 2024-05-01 10:00\n\
             > thing1: Order shipped\n\
             > url: https://shop.example/orders/42\n\
             > mini-program page: pages/order/detail?id=42\n\
             \n\
             **2. Subscribe message** `TPL_ORDER_STATUS`\n\
             > phrase2: Shipped\n\
             > page: pages/index/index\n\
             > version: trial"
        );
        assert!(rendered.truncated.is_empty());
    }

    #[test]
    fn keeps_a_multi_line_value_inside_its_quote() {
        let rendered = render(&to_oa(vec![template(&[("thing1", "line one\nline two")])])).unwrap();
        assert!(
            rendered
                .content
                .contains("> thing1: line one\n> line two\n"),
            "{}",
            rendered.content
        );
    }

    #[test]
    fn a_notification_without_channels_is_invalid_input() {
        assert!(matches!(
            render(&to_oa(Vec::new())),
            Err(Error::InvalidInput(m)) if m.contains("no channels")
        ));
    }

    #[test]
    fn content_over_the_limit_is_cut_on_a_char_boundary_and_names_what_was_lost() {
        // 3-byte characters, so a cut at an arbitrary byte would split one.
        let long = "货".repeat(1500);
        let rendered = render(&to_oa(vec![template(&[
            ("thing1", "short"),
            ("thing2", &long),
            ("thing3", "after"),
        ])]))
        .unwrap();
        assert!(rendered.content.len() <= MARKDOWN_MAX_BYTES);
        assert!(rendered.content.len() > MARKDOWN_MAX_BYTES - 4);
        assert!(rendered.content.ends_with(CUT_MARKER));
        assert!(rendered.content.contains("> thing1: short\n"));
        assert!(!rendered.content.contains("thing3"));
        assert_eq!(
            rendered.truncated,
            ["thing2", "thing3", "url", "miniprogram"]
        );
    }

    #[test]
    fn content_of_exactly_the_limit_is_sent_whole() {
        let header_and_title = render(&to_oa(vec![wit::ChannelMessage::TemplateMessage(
            wit::TemplateMessage {
                template_id: "T".into(),
                data: pairs(&[("k", "")]),
                url: None,
                miniprogram: None,
            },
        )]))
        .unwrap()
        .content
        .len();
        let value = "x".repeat(MARKDOWN_MAX_BYTES - header_and_title);
        let rendered = render(&to_oa(vec![wit::ChannelMessage::TemplateMessage(
            wit::TemplateMessage {
                template_id: "T".into(),
                data: pairs(&[("k", &value)]),
                url: None,
                miniprogram: None,
            },
        )]))
        .unwrap();
        assert_eq!(rendered.content.len(), MARKDOWN_MAX_BYTES);
        assert!(rendered.truncated.is_empty());
    }

    #[test]
    fn names_every_recipient_kind() {
        assert_eq!(
            recipient(&wit::Recipient::MiniProgram("m".into())),
            ("mini-program openid", "m")
        );
        assert_eq!(
            recipient(&wit::Recipient::Union("u".into())),
            ("unionid", "u")
        );
    }
}
