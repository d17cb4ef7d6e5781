//! `stagecheck init`: a scenario written from the deployment itself — the
//! execute-api base URL, the stages with the table prefixes their functions
//! use, prod-like stages protected, one smoke step per route — each value
//! commented with where it came from. It validates and runs as written.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use crate::Result;
use crate::cli::InitArgs;
use crate::deployment::{Deployment, StageView, TableRule};
use crate::error::{Error, exit};
use crate::report;

pub fn init(args: &InitArgs) -> Result<i32> {
    let out = args.out.as_deref().unwrap_or(Path::new("-"));
    if out != Path::new("-") {
        if out.exists() && !args.force {
            return Err(Error::Usage(format!(
                "{} exists: pass --force to overwrite it, or -o another file",
                out.display()
            )));
        }
        report::check_writable(out)?;
    }
    let d = super::read_deployment(&args.deployment, "for init")?;
    let text = scenario(&d, &args.protect, &today());
    report::write_output(out, &text)?;
    if out != Path::new("-") {
        eprintln!(
            "wrote {} ({} stage{}, {} step{}): check the values marked `placeholder`, then \
             `stagecheck validate {}`",
            out.display(),
            d.stages.len(),
            if d.stages.len() == 1 { "" } else { "s" },
            text.matches("[[steps]]").count(),
            if text.matches("[[steps]]").count() == 1 {
                ""
            } else {
                "s"
            },
            out.display()
        );
    }
    Ok(exit::PASS)
}

fn today() -> String {
    crate::summary::rfc3339(std::time::SystemTime::now())
        .get(..10)
        .unwrap_or_default()
        .to_string()
}

/// A TOML basic string (JSON's escapes are TOML's).
fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

const PROTECTED_NAMES: [&str; 3] = ["prod", "production", "live"];

/// The prefix a stage's function puts before its table: the table rule's
/// variable, as the function's environment sets it.
fn table_prefix(d: &Deployment, stage: &StageView) -> (Option<String>, String) {
    let rule = TableRule(d.table_rule.clone());
    let variable = rule.variables().into_iter().next();
    for arn in stage.function_arns() {
        if let Some(f) = d.function(arn)
            && f.found
        {
            let value = variable
                .as_ref()
                .and_then(|v| f.environment.get(v).cloned())
                .unwrap_or_default();
            return (Some(f.name.clone()), value);
        }
    }
    (None, String::new())
}

/// The scenario text.
pub fn scenario(d: &Deployment, protect: &[String], date: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Written by `stagecheck init --rest-api {}` on {date} from the control plane ({}).\n\
         # Every value says where it came from; `placeholder` marks what to fill in.\n",
        d.rest_api.name, d.region
    );
    let _ = writeln!(
        out,
        "name = {}",
        quoted(&format!("{}-smoke", d.rest_api.name))
    );
    let protected = |name: &str| {
        PROTECTED_NAMES.contains(&name.to_ascii_lowercase().as_str())
            || protect.iter().any(|p| p == name)
    };
    let default_stage = d
        .stages
        .iter()
        .find(|s| !protected(&s.name))
        .or(d.stages.first());
    let _ = writeln!(out, "\n[target]");
    let _ = writeln!(
        out,
        "base_url = {}   # the REST API's id and Region",
        quoted(&format!(
            "https://{}.execute-api.{}.amazonaws.com/{{stage}}",
            d.rest_api.id, d.region
        ))
    );
    if let Some(s) = default_stage {
        let _ = writeln!(
            out,
            "stage = {}   # the first stage that is not protected",
            quoted(&s.name)
        );
    }
    for stage in &d.stages {
        let (function, prefix) = table_prefix(d, stage);
        let _ = writeln!(out, "\n[[stages]]");
        let _ = writeln!(out, "name = {}", quoted(&stage.name));
        let source = match &function {
            Some(f) => format!("{f}'s environment, by the rule {}", d.table_rule),
            None => "no function found: placeholder".into(),
        };
        let _ = writeln!(out, "table_prefix = {}   # {source}", quoted(&prefix));
        if protected(&stage.name) {
            let why = if protect.iter().any(|p| p == &stage.name) {
                "--protect"
            } else {
                "a production stage's name"
            };
            let _ = writeln!(
                out,
                "protected = true   # {why}: smoke runs only without --allow-prod"
            );
        }
        // Per-stage names only where they differ from the defaults.
        if let Some(f) = function.as_ref().and_then(|name| {
            stage
                .function_arns()
                .into_iter()
                .filter_map(|a| d.function(a))
                .find(|f| &f.name == name)
        }) {
            let default_function = format!("{prefix}user-service");
            if f.name != default_function {
                let _ = writeln!(
                    out,
                    "function = {}   # the integration URI with stage {}'s variables",
                    quoted(&f.name),
                    stage.name
                );
            }
            if let Some(t) = &f.table
                && *t != format!("{prefix}User")
            {
                let _ = writeln!(
                    out,
                    "table = {}   # the table rule {}",
                    quoted(t),
                    d.table_rule
                );
            }
            let default_group = format!("/aws/lambda/{}", f.name);
            if f.log_group != default_group {
                let _ = writeln!(
                    out,
                    "log_group = {}   # the function's LoggingConfig",
                    quoted(&f.log_group)
                );
            }
        }
    }
    let Some(stage) = default_stage else {
        let _ = writeln!(out, "\n# The API has no stage: add [[steps]] by hand.");
        return out;
    };
    steps(stage, &mut out);
    out
}

/// One smoke step per route: a collection with an item route below it is
/// written to (POST) and the new item's id captured for the item's GET;
/// other routes are read. `ANY` routes get that one method.
fn steps(stage: &StageView, out: &mut String) {
    let paths: BTreeSet<&str> = stage.routes.iter().map(|r| r.route.path.as_str()).collect();
    let item_below = |path: &str| {
        paths.iter().find_map(|p| {
            let rest = p.strip_prefix(path)?.strip_prefix('/')?;
            let name = rest.strip_prefix('{')?.strip_suffix('}')?;
            (!name.contains('/')).then(|| name.trim_end_matches('+').to_string())
        })
    };
    let mut captured: Vec<String> = Vec::new();
    let mut written: Vec<(u8, String)> = Vec::new();
    for r in &stage.routes {
        let path = r.route.path.as_str();
        let methods: Vec<String> = if r.route.method == "ANY" {
            vec![
                if item_below(path).is_some() {
                    "POST"
                } else {
                    "GET"
                }
                .to_string(),
            ]
        } else {
            vec![r.route.method.clone()]
        };
        for method in methods {
            let order = match method.as_str() {
                "POST" => 0,
                "GET" | "HEAD" | "OPTIONS" => 1,
                "PUT" | "PATCH" => 2,
                _ => 3,
            };
            let mut step = String::new();
            let name = step_name(&method, path);
            let _ = writeln!(step, "\n[[steps]]");
            let _ = writeln!(step, "name = {}", quoted(&name));
            let _ = writeln!(
                step,
                "method = {}   # route {}",
                quoted(&method),
                r.route.label()
            );
            let (templated, placeholders) = path_template(path, &captured);
            let _ = writeln!(
                step,
                "path = {}{}",
                quoted(&templated),
                if placeholders.is_empty() {
                    String::new()
                } else {
                    format!(
                        "   # placeholder: no earlier step creates {}; put a real value here",
                        placeholders.join(", ")
                    )
                }
            );
            if matches!(method.as_str(), "POST" | "PUT" | "PATCH") {
                let _ = writeln!(
                    step,
                    "body = {{ Name = \"stagecheck-{{{{seq}}}}\" }}   # placeholder: a body the function accepts"
                );
            }
            let _ = writeln!(step, "checks = [{{ status = [200, 201, 204] }}]");
            if method == "POST"
                && let Some(param) = item_below(path)
            {
                let _ = writeln!(
                    step,
                    "capture = {{ {param} = {{ json = \"Id\" }} }}   # placeholder: the response field holding the new item's {param}"
                );
                captured.push(param);
            }
            written.push((order, step));
        }
    }
    written.sort_by_key(|(order, _)| *order);
    for (_, step) in written {
        out.push_str(&step);
    }
}

fn step_name(method: &str, path: &str) -> String {
    let mut name = method.to_ascii_lowercase();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        let clean: String = seg
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        if !clean.is_empty() {
            name.push('_');
            name.push_str(&clean.replace('-', "_"));
        }
    }
    if name.len() == method.len() {
        name.push_str("_root");
    }
    name
}

/// `/user/{id}` → `/user/{{id}}` when a step captures `id`, else a marked
/// placeholder value.
fn path_template(path: &str, captured: &[String]) -> (String, Vec<String>) {
    let mut placeholders = Vec::new();
    let segs: Vec<String> = path
        .split('/')
        .map(
            |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => {
                    let name = name.trim_end_matches('+');
                    if captured.iter().any(|c| c == name) {
                        format!("{{{{{name}}}}}")
                    } else {
                        placeholders.push(name.to_string());
                        format!("REPLACE-{name}")
                    }
                }
                None => seg.to_string(),
            },
        )
        .collect();
    (segs.join("/"), placeholders)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_take_captured_values_or_marked_placeholders() {
        assert_eq!(
            path_template("/user/{id}", &["id".into()]),
            ("/user/{{id}}".into(), vec![])
        );
        assert_eq!(
            path_template("/order/{orderId}/item/{n}", &[]),
            (
                "/order/REPLACE-orderId/item/REPLACE-n".into(),
                vec!["orderId".into(), "n".into()]
            )
        );
        assert_eq!(step_name("GET", "/user/{id}"), "get_user_id");
        assert_eq!(step_name("GET", "/"), "get_root");
    }
}
