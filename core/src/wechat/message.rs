//! Request bodies of the two send APIs, and the checks made before anything is sent.

use std::collections::HashSet;

use serde_json::{Map, Value, json};
use wxnotify_rules::{template_display, validate_keyword};

use super::error::{Error, Result};
use wxnotify_contract as contract;

/// A `template/send` body ready to go, and the keys whose values were shortened.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateBody {
    pub json: Value,
    pub truncated: Vec<String>,
}

/// Checks an OA template message. The same message reaches the OA whether it came as a
/// template message or as a legacy `mp_template_msg`.
pub fn check_template(message: &contract::TemplateMessage) -> Result<()> {
    let context = "template message";
    require_template_id(context, &message.template_id)?;
    check_keys(context, &message.data)?;
    if let Some(url) = &message.url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        return Err(Error::InvalidInput(format!(
            "{context}: url must be an http(s) URL, got `{url}`"
        )));
    }
    if let Some(page) = &message.miniprogram
        && page.pagepath.trim().is_empty()
    {
        return Err(Error::InvalidInput(format!(
            "{context}: miniprogram.pagepath is empty"
        )));
    }
    Ok(())
}

/// Builds the `template/send` body. Values are sent as the platform shows them (no line
/// breaks, at most 20 characters), so what the caller is told is what the user sees.
pub fn template_body(
    touser: &str,
    message: &contract::TemplateMessage,
    tenant_mini_appid: Option<&str>,
    client_msg_id: Option<&str>,
) -> Result<TemplateBody> {
    let mut data = Map::new();
    let mut truncated = Vec::new();
    for (key, value) in &message.data {
        let shown = template_display(value);
        if shown.truncated {
            truncated.push(key.clone());
        }
        data.insert(key.clone(), json!({ "value": shown.text }));
    }
    let mut body = json!({
        "touser": touser,
        "template_id": message.template_id,
        "data": data,
    });
    if let Some(url) = &message.url {
        body["url"] = json!(url);
    }
    if let Some(page) = &message.miniprogram {
        let appid = page.appid.as_deref().or(tenant_mini_appid).ok_or_else(|| {
            Error::Config(
                "template message links a mini-program page but names no appid, and config key \
                 `mini_appid` is missing"
                    .into(),
            )
        })?;
        body["miniprogram"] = json!({ "appid": appid, "pagepath": page.pagepath });
    }
    if let Some(id) = client_msg_id {
        body["client_msg_id"] = json!(id);
    }
    Ok(TemplateBody {
        json: body,
        truncated,
    })
}

/// The template message a legacy `uniform_send` request stands for. Its `appid` must be the
/// tenant's OA: sending another account's template with this OA's token cannot work.
pub fn from_uniform(
    message: &contract::UniformMessage,
    tenant_oa_appid: Option<&str>,
) -> Result<contract::TemplateMessage> {
    if let (Some(requested), Some(ours)) = (message.appid.as_deref(), tenant_oa_appid)
        && requested != ours
    {
        return Err(Error::InvalidInput(format!(
            "uniform message: mp_template_msg.appid `{requested}` is not this tenant's official \
             account `{ours}`"
        )));
    }
    Ok(contract::TemplateMessage {
        template_id: message.template_id.clone(),
        data: message.data.clone(),
        url: message.url.clone(),
        miniprogram: message.miniprogram.clone(),
    })
}

const LANGS: [&str; 4] = ["zh_CN", "en_US", "zh_HK", "zh_TW"];

/// Checks a subscribe message, every value against its keyword type: WeChat answers 47003
/// for the first bad value only, after a round trip, and the call is wasted.
pub fn check_subscribe(message: &contract::SubscribeMessage) -> Result<()> {
    let context = "subscribe message";
    require_template_id(context, &message.template_id)?;
    check_keys(context, &message.data)?;
    for (key, value) in &message.data {
        validate_keyword(key, value).map_err(|e| Error::InvalidInput(format!("{context}: {e}")))?;
    }
    if let Some(lang) = &message.lang
        && !LANGS.contains(&lang.as_str())
    {
        return Err(Error::InvalidInput(format!(
            "{context}: lang must be one of {}, got `{lang}`",
            LANGS.join(", ")
        )));
    }
    Ok(())
}

/// Builds the `subscribe/send` body. `miniprogram_state` and `lang` are always sent: the
/// documentation disagrees on whether they are required.
pub fn subscribe_body(touser: &str, message: &contract::SubscribeMessage) -> Value {
    let data: Map<String, Value> = message
        .data
        .iter()
        .map(|(key, value)| (key.clone(), json!({ "value": value })))
        .collect();
    let state = match message
        .miniprogram_state
        .unwrap_or(contract::MiniprogramState::Formal)
    {
        contract::MiniprogramState::Developer => "developer",
        contract::MiniprogramState::Trial => "trial",
        contract::MiniprogramState::Formal => "formal",
    };
    let mut body = json!({
        "touser": touser,
        "template_id": message.template_id,
        "miniprogram_state": state,
        "lang": message.lang.as_deref().unwrap_or("zh_CN"),
        "data": data,
    });
    if let Some(page) = &message.page {
        body["page"] = json!(page);
    }
    body
}

fn require_template_id(context: &str, template_id: &str) -> Result<()> {
    if template_id.trim().is_empty() {
        return Err(Error::InvalidInput(format!(
            "{context}: template_id is empty"
        )));
    }
    Ok(())
}

fn check_keys(context: &str, data: &contract::TemplateData) -> Result<()> {
    let mut seen = HashSet::new();
    for (key, _) in data {
        if key.trim().is_empty() {
            return Err(Error::InvalidInput(format!(
                "{context}: a data key is empty"
            )));
        }
        if !seen.insert(key.as_str()) {
            return Err(Error::InvalidInput(format!(
                "{context}: data key `{key}` appears twice"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> contract::TemplateData {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn template(pairs: &[(&str, &str)]) -> contract::TemplateMessage {
        contract::TemplateMessage {
            template_id: "TPL".into(),
            data: data(pairs),
            url: None,
            miniprogram: Some(contract::MiniprogramPage {
                appid: None,
                pagepath: "pages/a?id=1".into(),
            }),
        }
    }

    fn subscribe(pairs: &[(&str, &str)]) -> contract::SubscribeMessage {
        contract::SubscribeMessage {
            template_id: "SUB".into(),
            data: data(pairs),
            page: Some("pages/index/index".into()),
            miniprogram_state: None,
            lang: None,
        }
    }

    #[test]
    fn template_body_has_the_platform_shape() {
        let body = template_body(
            "oOA1",
            &template(&[("thing1", "Shipped")]),
            Some("wxmini"),
            Some("k1"),
        )
        .unwrap();
        assert_eq!(
            body.json,
            json!({
                "touser": "oOA1",
                "template_id": "TPL",
                "data": {"thing1": {"value": "Shipped"}},
                "miniprogram": {"appid": "wxmini", "pagepath": "pages/a?id=1"},
                "client_msg_id": "k1",
            })
        );
        assert!(body.truncated.is_empty());
    }

    #[test]
    fn long_template_values_are_truncated_and_reported() {
        let long = "一二三四五六七八九十一二三四五六七八九十超";
        let body = template_body(
            "o",
            &template(&[("thing1", long), ("time2", "a\nb")]),
            Some("wx"),
            None,
        )
        .unwrap();
        assert_eq!(
            body.truncated,
            vec!["thing1".to_owned(), "time2".to_owned()]
        );
        let shown = body.json["data"]["thing1"]["value"].as_str().unwrap();
        assert_eq!(shown.chars().count(), 21, "20 characters and an ellipsis");
        assert!(
            !body.json["data"]["time2"]["value"]
                .as_str()
                .unwrap()
                .contains('\n')
        );
    }

    #[test]
    fn a_mini_program_link_needs_an_appid() {
        let err = template_body("o", &template(&[]), None, None).unwrap_err();
        assert!(matches!(err, Error::Config(m) if m.contains("mini_appid")));
    }

    #[test]
    fn template_checks_name_the_problem() {
        let mut message = template(&[("thing1", "a"), ("thing1", "b")]);
        assert!(
            matches!(check_template(&message), Err(Error::InvalidInput(m)) if m.contains("`thing1` appears twice"))
        );
        message.data = data(&[("thing1", "a")]);
        message.url = Some("javascript:alert(1)".into());
        assert!(
            matches!(check_template(&message), Err(Error::InvalidInput(m)) if m.contains("url"))
        );
        message.url = None;
        message.template_id = " ".into();
        assert!(
            matches!(check_template(&message), Err(Error::InvalidInput(m)) if m.contains("template_id"))
        );
    }

    #[test]
    fn subscribe_values_are_checked_against_their_keyword_type() {
        assert_eq!(
            check_subscribe(&subscribe(&[("phrase2", "配送中")])),
            Ok(())
        );
        let err = check_subscribe(&subscribe(&[("phrase2", "六个汉字的词")])).unwrap_err();
        assert!(
            matches!(err, Error::InvalidInput(ref m) if m.contains("phrase2")),
            "{err}"
        );
        let mut message = subscribe(&[("thing1", "ok")]);
        message.lang = Some("fr_FR".into());
        assert!(
            matches!(check_subscribe(&message), Err(Error::InvalidInput(m)) if m.contains("lang"))
        );
    }

    #[test]
    fn subscribe_body_sends_state_and_lang_explicitly() {
        let body = subscribe_body("oMP1", &subscribe(&[("thing1", "ok")]));
        assert_eq!(
            body,
            json!({
                "touser": "oMP1",
                "template_id": "SUB",
                "page": "pages/index/index",
                "miniprogram_state": "formal",
                "lang": "zh_CN",
                "data": {"thing1": {"value": "ok"}},
            })
        );
    }

    #[test]
    fn uniform_requests_must_target_the_tenants_oa() {
        let uniform = contract::UniformMessage {
            appid: Some("wxOTHER".into()),
            template_id: "TPL".into(),
            data: data(&[("thing1", "a")]),
            url: None,
            miniprogram: None,
        };
        assert!(
            matches!(from_uniform(&uniform, Some("wxOA")), Err(Error::InvalidInput(m)) if m.contains("wxOTHER"))
        );
        let ok = from_uniform(
            &contract::UniformMessage {
                appid: Some("wxOA".into()),
                ..uniform
            },
            Some("wxOA"),
        )
        .unwrap();
        assert_eq!(ok.template_id, "TPL");
    }
}
