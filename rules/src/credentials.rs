//! Which query parameters of a WeChat or WeCom URL are credentials, so that every log line and
//! error message that shows a URL shows `***` instead: an access token, an AppSecret
//! (`secret` in token calls, `appsecret` in `clear_quota/v2`), a login code and a WeCom robot's
//! webhook key.

/// Query parameters whose values are credentials.
pub const QUERY_PARAMS: [&str; 5] = ["access_token", "secret", "appsecret", "js_code", "key"];

/// `url` with the value of every [`QUERY_PARAMS`] parameter replaced by `***`; the rest, the
/// fragment included, as it was.
pub fn redact_url(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let (query, fragment) = match query.split_once('#') {
        Some((query, fragment)) => (query, Some(fragment)),
        None => (query, None),
    };
    let redacted: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if QUERY_PARAMS.contains(&name) => format!("{name}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    let mut url = format!("{base}?{}", redacted.join("&"));
    if let Some(fragment) = fragment {
        url.push('#');
        url.push_str(fragment);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_credential_is_hidden_and_nothing_else() {
        assert_eq!(
            redact_url(
                "https://api.weixin.qq.com/sns/jscode2session?appid=wx1&secret=s3&js_code=c0de&grant_type=authorization_code"
            ),
            "https://api.weixin.qq.com/sns/jscode2session?appid=wx1&secret=***&js_code=***&grant_type=authorization_code"
        );
        assert_eq!(
            redact_url("http://h/cgi-bin/message/template/send?access_token=T0K3N"),
            "http://h/cgi-bin/message/template/send?access_token=***"
        );
        assert_eq!(
            redact_url("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc-123#x"),
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***#x"
        );
        assert_eq!(
            redact_url("http://h/cgi-bin/clear_quota/v2?appid=wx1&appsecret=s3"),
            "http://h/cgi-bin/clear_quota/v2?appid=wx1&appsecret=***"
        );
        assert_eq!(redact_url("http://h/x"), "http://h/x");
        assert_eq!(
            redact_url("http://h/x?flag&openid=o1"),
            "http://h/x?flag&openid=o1"
        );
    }
}
