//! Where the traffic goes: the base URL split into a [`Target`], the
//! scenario's stages with their auth and [`Backends`] (named by the
//! `[backends]` templates), the TLS options, and the rule that keeps API
//! keys out of the file.

use std::path::PathBuf;

use http::HeaderName;
use toml::Spanned;

use super::Cx;
use crate::auth::AuthKind;
use crate::error::Error;
use crate::scenario::file::{BackendsSpec, StageSpec};

#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub name: String,
    pub table_prefix: String,
    pub protected: bool,
    pub auth: AuthKind,
    /// The environment variable holding the stage's API key.
    pub api_key_env: Option<String>,
    pub backends: Backends,
}

/// Where a stage's traffic should land.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backends {
    pub table: String,
    pub function: String,
    pub log_group: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

#[derive(Debug, Clone)]
pub struct Target {
    /// The base URL with `{stage}` replaced.
    pub base_url: String,
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    /// The `Host` header.
    pub authority: String,
    /// `authority` ready to send, validated once.
    pub host_header: http::HeaderValue,
    /// The path every step's path is appended to, without a trailing `/`.
    pub base_path: String,
}

#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsOptions {
    /// Extra PEM CA certificate(s) to trust for HTTPS targets.
    #[arg(long, value_name = "PEM")]
    pub ca_cert: Option<PathBuf>,

    /// Do not verify the target's TLS certificate.
    #[arg(long)]
    pub insecure: bool,
}

pub fn parse_base_url(template: &str, stage: &str) -> Result<Target, String> {
    let url = template.replace("{stage}", stage);
    if !url.contains("://") {
        return Err(format!("{url:?} needs a scheme, e.g. https://{url}"));
    }
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::Http,
        Some("https") => Scheme::Https,
        Some(other) => {
            return Err(format!(
                "{url:?}: unsupported scheme {other:?} (use http or https)"
            ));
        }
        None => return Err(format!("{url:?} needs a scheme, e.g. https://{url}")),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{url:?} has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!(
            "{url:?}: credentials in the URL are not supported; use headers or auth"
        ));
    }
    if uri.query().is_some() {
        return Err(format!(
            "{url:?}: a base URL cannot have a query; put it in the steps"
        ));
    }
    let port = authority.port_u16().unwrap_or(match scheme {
        Scheme::Http => 80,
        Scheme::Https => 443,
    });
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok(Target {
        base_url: url.clone(),
        scheme,
        host,
        port,
        authority: authority.as_str().to_string(),
        host_header: http::HeaderValue::from_str(authority.as_str())
            .map_err(|_| format!("{url:?}: the host is not a valid Host header"))?,
        base_path: uri.path().trim_end_matches('/').to_string(),
    })
}

/// The `[backends]` name templates, with the seed's convention as defaults.
pub(super) struct Naming {
    table: String,
    function: String,
    log_group: String,
}

pub(super) trait StageNames {
    fn table(&self) -> Option<&str>;
    fn function(&self) -> Option<&str>;
    fn log_group(&self) -> Option<&str>;
}

impl StageNames for StageSpec {
    fn table(&self) -> Option<&str> {
        self.table.as_ref().map(|s| s.get_ref().as_str())
    }
    fn function(&self) -> Option<&str> {
        self.function.as_ref().map(|s| s.get_ref().as_str())
    }
    fn log_group(&self) -> Option<&str> {
        self.log_group.as_ref().map(|s| s.get_ref().as_str())
    }
}

pub(super) struct NoOverrides;

impl StageNames for NoOverrides {
    fn table(&self) -> Option<&str> {
        None
    }
    fn function(&self) -> Option<&str> {
        None
    }
    fn log_group(&self) -> Option<&str> {
        None
    }
}

impl Naming {
    /// The table template as written (`{prefix}User`).
    pub(super) fn table_template(&self) -> &str {
        &self.table
    }

    pub(super) fn new(spec: &BackendsSpec) -> Naming {
        let pick = |v: &Option<Spanned<String>>, default: &str| {
            v.as_ref()
                .map_or(default.to_string(), |s| s.get_ref().clone())
        };
        Naming {
            table: pick(&spec.table, "{prefix}User"),
            function: pick(&spec.function, "{prefix}user-service"),
            log_group: pick(&spec.log_group, "/aws/lambda/{function}"),
        }
    }

    pub(super) fn resolve(
        &self,
        stage: &str,
        prefix: &str,
        overrides: &dyn StageNames,
    ) -> Backends {
        let fill = |t: &str| t.replace("{prefix}", prefix).replace("{stage}", stage);
        let table = fill(overrides.table().unwrap_or(&self.table));
        let function = fill(overrides.function().unwrap_or(&self.function));
        let log_group =
            fill(overrides.log_group().unwrap_or(&self.log_group)).replace("{function}", &function);
        Backends {
            table,
            function,
            log_group,
        }
    }
}

pub(super) fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// An API key written in clear in the scenario would end up in version
/// control: it must come from the environment.
pub(super) fn reject_literal_api_key(
    cx: &Cx<'_>,
    name: &HeaderName,
    value: &Spanned<String>,
) -> Result<(), Error> {
    if name.as_str() == crate::auth::API_KEY_HEADER && !value.get_ref().contains("{{") {
        return Err(cx.error(
            value.span(),
            "an API key is not written in the scenario: set `auth = \"api-key\"` and `api_key_env = \"NAME\"` on the stage, or write `{{env.NAME}}`",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{MINIMAL, plan};
    use crate::error::Error;

    #[test]
    fn api_keys_are_not_written_in_clear() {
        let src = MINIMAL.replace(
            "[[steps]]",
            "[headers]\nx-api-key = \"abc123abc123\"\n\n[[steps]]",
        );
        match plan(&src) {
            Err(Error::Scenario(e)) => {
                assert_eq!(e.field, "headers.x-api-key");
                assert!(
                    e.message.contains("api_key_env") && !e.message.contains("abc123"),
                    "{e}"
                );
            }
            other => panic!("{other:?}"),
        }
        let bad = MINIMAL.replace(
            "stage = \"test\"\n",
            "stage = \"test\"\n\n[[stages]]\nname = \"test\"\nauth = \"basic\"\n",
        );
        assert!(
            plan(&bad)
                .unwrap_err()
                .to_string()
                .contains("expected \"iam\"")
        );
    }
}
