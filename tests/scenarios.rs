//! Tests as data: every shipped scenario validates, and every broken scenario
//! in tests/bad/ fails with exit 2 naming its file, line and field.
//! A bad case is `NAME.toml` plus `NAME.expect`: first line `LINE`, second
//! line the key path, third a piece of the message.

mod support;

use std::time::Duration;

use support::*;

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

#[test]
fn every_broken_scenario_is_exit_2_with_its_line() {
    let mut count = 0;
    for entry in std::fs::read_dir(root().join("tests/bad")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let expect = std::fs::read_to_string(path.with_extension("expect"))
            .unwrap_or_else(|_| panic!("{} has no .expect file", path.display()));
        let mut lines = expect.lines();
        let (line, field, message) = (
            lines.next().unwrap(),
            lines.next().unwrap(),
            lines.next().unwrap(),
        );
        let output = run_bounded(
            stagecheck().arg("validate").arg(&path),
            Duration::from_secs(20),
        );
        let stderr = text(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{}: {stderr}",
            path.display()
        );
        let located = format!("{}:{line}:", path.display());
        assert!(
            stderr.contains(&located),
            "{}: expected {located} in: {stderr}",
            path.display()
        );
        assert!(
            stderr.contains(&format!(" {field}: ")),
            "{}: expected field {field} in: {stderr}",
            path.display()
        );
        assert!(
            stderr.contains(message),
            "{}: expected {message:?} in: {stderr}",
            path.display()
        );
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
