//! Redirect actions: the `Location` an ALB answers with, from the action's components and their
//! `#{protocol}`, `#{host}`, `#{port}`, `#{path}`, `#{query}` placeholders. Pure.

use berth_shapes::elbv2 as wire;

/// What the placeholders stand for: the request as the client sent it.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// `HTTP` or `HTTPS`, as ELBv2 spells listener protocols.
    pub protocol: &'a str,
    /// Without its port.
    pub host: &'a str,
    pub port: u16,
    /// Starts with `/`.
    pub path: &'a str,
    /// Without the `?`.
    pub query: Option<&'a str>,
}

fn substitute(template: &str, o: &Origin<'_>) -> String {
    template
        .replace("#{protocol}", o.protocol)
        .replace("#{host}", o.host)
        .replace("#{port}", &o.port.to_string())
        // ALB's `#{path}` is the path without its leading slash (the default is `/#{path}`).
        .replace("#{path}", o.path.strip_prefix('/').unwrap_or(o.path))
        .replace("#{query}", o.query.unwrap_or_default())
}

/// The status and `Location` of a redirect; components left out keep the request's.
pub fn location(cfg: &wire::RedirectActionConfig, o: &Origin<'_>) -> (u16, String) {
    let part = |v: &Option<String>, default: &str| substitute(v.as_deref().unwrap_or(default), o);
    let protocol = part(&cfg.protocol, "#{protocol}").to_ascii_lowercase();
    let host = part(&cfg.host, "#{host}");
    let port = part(&cfg.port, "#{port}");
    let mut path = part(&cfg.path, "/#{path}");
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    let query = part(&cfg.query, "#{query}");
    let default_port = matches!(
        (protocol.as_str(), port.as_str()),
        ("http", "80") | ("https", "443")
    );
    let mut url = format!("{protocol}://{host}");
    if !default_port && !port.is_empty() {
        url.push(':');
        url.push_str(&port);
    }
    url.push_str(&path);
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query);
    }
    let status = match cfg.status_code.as_deref() {
        Some("HTTP_301") => 301,
        _ => 302,
    };
    (status, url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(
        protocol: Option<&str>,
        host: Option<&str>,
        port: Option<&str>,
        path: Option<&str>,
        query: Option<&str>,
        code: &str,
    ) -> wire::RedirectActionConfig {
        wire::RedirectActionConfig {
            protocol: protocol.map(str::to_string),
            host: host.map(str::to_string),
            port: port.map(str::to_string),
            path: path.map(str::to_string),
            query: query.map(str::to_string),
            status_code: Some(code.into()),
        }
    }

    #[test]
    fn placeholders_and_defaults_rebuild_the_url() {
        let origin = Origin {
            protocol: "HTTP",
            host: "shop.example.com",
            port: 8080,
            path: "/cart/items",
            query: Some("a=1"),
        };
        let cases = [
            (
                cfg(None, None, None, None, None, "HTTP_302"),
                302,
                "http://shop.example.com:8080/cart/items?a=1",
            ),
            (
                cfg(Some("HTTPS"), None, Some("443"), None, None, "HTTP_301"),
                301,
                "https://shop.example.com/cart/items?a=1",
            ),
            (
                cfg(
                    None,
                    Some("new.#{host}"),
                    Some("80"),
                    Some("/v2/#{path}"),
                    Some("#{query}&from=#{port}"),
                    "HTTP_301",
                ),
                301,
                "http://new.shop.example.com/v2/cart/items?a=1&from=8080",
            ),
            (
                cfg(
                    Some("#{protocol}"),
                    Some("#{host}"),
                    Some("#{port}"),
                    Some("/#{path}"),
                    Some(""),
                    "HTTP_302",
                ),
                302,
                "http://shop.example.com:8080/cart/items",
            ),
        ];
        for (c, status, want) in cases {
            assert_eq!(location(&c, &origin), (status, want.to_string()), "{c:?}");
        }
    }

    #[test]
    fn an_empty_query_leaves_no_question_mark() {
        let origin = Origin {
            protocol: "HTTP",
            host: "h",
            port: 80,
            path: "/",
            query: None,
        };
        assert_eq!(
            location(&cfg(None, None, None, None, None, "HTTP_302"), &origin).1,
            "http://h/"
        );
    }
}
