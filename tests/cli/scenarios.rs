//! Tests as data: every shipped scenario validates, and every broken scenario
//! in tests/bad/ fails with exit 2 naming its file, line and field.
//! A bad case is `NAME.toml` plus `NAME.expect`: every line of the expect
//! file is a piece of text the error must contain, verbatim (leading spaces
//! count, so a caret line pins the column). The binary runs in the project's
//! root on `tests/bad/NAME.toml`, so paths in the error are that.

use std::time::Duration;

use crate::support::*;

#[test]
fn every_shipped_scenario_validates() {
    let mut count = 0;
    for entry in std::fs::read_dir(root().join("scenarios")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let output = run_bounded(
                stagecheck().arg("validate").arg(&path),
                Duration::from_secs(20),
            );
            assert_eq!(
                output.status.code(),
                Some(0),
                "{}: {}",
                path.display(),
                text(&output.stderr)
            );
            count += 1;
        }
    }
    assert!(count >= 4, "found {count} scenarios");
}

/// The pieces an expect file asks for. An empty line would ask for `""`,
/// which every output contains: it is refused, not skipped.
fn expected_pieces(path: &std::path::Path, expect: &str) -> Vec<String> {
    let pieces: Vec<String> = expect.lines().map(str::to_string).collect();
    assert!(!pieces.is_empty(), "{} is empty", path.display());
    for (i, piece) in pieces.iter().enumerate() {
        assert!(
            !piece.trim().is_empty(),
            "{}:{}: an empty line asserts nothing; remove it",
            path.display(),
            i + 1
        );
    }
    pieces
}

#[test]
fn expect_files_with_empty_lines_are_refused() {
    let path = std::path::Path::new("x.expect");
    assert_eq!(
        expected_pieces(path, "x.toml:8:\n  |"),
        vec!["x.toml:8:", "  |"]
    );
    for bad in ["", "8\n\nmessage", "8\n   \n", "8\nfield\n\n"] {
        let result = std::panic::catch_unwind(|| expected_pieces(path, bad));
        assert!(result.is_err(), "{bad:?} was accepted");
    }
}

#[test]
fn every_broken_scenario_is_exit_2_with_its_line() {
    let mut count = 0;
    for entry in std::fs::read_dir(root().join("tests/bad")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let expect_path = path.with_extension("expect");
        let expect = std::fs::read_to_string(&expect_path)
            .unwrap_or_else(|_| panic!("{} has no .expect file", path.display()));
        let pieces = expected_pieces(&expect_path, &expect);
        let relative = path.strip_prefix(root()).unwrap();
        let output = run_bounded(
            stagecheck()
                .current_dir(root())
                .arg("validate")
                .arg(relative),
            Duration::from_secs(20),
        );
        let stderr = text(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{}: {stderr}",
            path.display()
        );
        let located = format!("--> {}:", relative.display());
        assert!(
            stderr.contains(&located),
            "{}: expected {located} in: {stderr}",
            path.display()
        );
        assert!(
            stderr.contains('^'),
            "{}: expected a caret under the column in: {stderr}",
            path.display()
        );
        assert!(
            !stderr.contains(": : ") && !stderr.contains("in \n"),
            "{}: an empty key path in: {stderr}",
            path.display()
        );
        for piece in &pieces {
            assert!(
                stderr.contains(piece.as_str()),
                "{}: expected {piece:?} in:\n{stderr}",
                path.display()
            );
        }
        count += 1;
    }
    assert!(count >= 8, "found {count} bad scenarios");
}

#[test]
fn a_missing_file_is_exit_2_naming_it() {
    let output = run_bounded(
        stagecheck().args(["validate", "no/such/scenario.toml"]),
        Duration::from_secs(20),
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("no/such/scenario.toml"));
    let output = run_bounded(
        stagecheck().args(["run", "no/such/scenario.toml"]),
        Duration::from_secs(20),
    );
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn bad_flags_are_exit_2() {
    let file = root().join("scenarios/smoke.toml");
    for args in [
        vec!["--shard", "0/3"],
        vec!["--stage", "nope"],
        vec!["--duration", "fast"],
        vec!["--header", "novalue"],
        vec!["--base-url", "ftp://x/"],
    ] {
        let output = run_bounded(
            stagecheck().arg("run").arg(&file).args(&args),
            Duration::from_secs(20),
        );
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&output.stderr)
        );
    }
}

/// Most functions log no client header, and Powertools logs API Gateway's
/// request id: by default either id finds an invocation, and the shipped
/// scenarios rely on that default rather than naming a mode.
#[test]
fn log_match_defaults_to_either_and_shipped_scenarios_use_the_default() {
    use stagecheck::scenario::{LogMatch, Overrides};
    let overrides = Overrides {
        validate_only: true,
        ..Overrides::default()
    };
    for entry in std::fs::read_dir(root().join("scenarios")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(!text.contains("log_match"), "{}", path.display());
            let plan = stagecheck::scenario::load(&path, &overrides).unwrap();
            assert!(
                plan.verify.log_match == LogMatch::Either,
                "{}",
                path.display()
            );
        }
    }
}
