//! `scripts/layers` keeps the modules pointing one way: it passes on the tree as
//! it is and fails, naming the modules, on a tree with a cycle.

use std::process::Command;
use std::time::Duration;

use crate::support::*;

fn layers(args: &[&str]) -> (i32, String, String) {
    let output = run_bounded(
        Command::new("python3")
            .arg(root().join("scripts/layers"))
            .args(args),
        Duration::from_secs(30),
    );
    (
        output.status.code().unwrap_or(-1),
        text(&output.stdout),
        text(&output.stderr),
    )
}

#[test]
fn the_source_tree_has_no_module_cycle() {
    let (code, stdout, stderr) = layers(&[]);
    assert_eq!(code, 0, "{stderr}");
    let top = stdout.lines().last().unwrap_or_default();
    assert!(top.ends_with("commands"), "{stdout}");
}

#[test]
fn a_cycle_is_found_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::write(src.join("lib.rs"), "pub mod a;\npub mod b;\npub mod c;\n").unwrap();
    std::fs::create_dir(src.join("a")).unwrap();
    std::fs::write(src.join("a/mod.rs"), "use crate::{b, c};\n").unwrap();
    // A mention in a comment is no edge: crate::a
    std::fs::write(src.join("b.rs"), "// crate::c\nfn f() { crate::a::g() }\n").unwrap();
    std::fs::write(src.join("c.rs"), "/* crate::a */\n").unwrap();
    let (code, _, stderr) = layers(&["--src", src.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("cycle among a, b (a -> b; b -> a)"),
        "{stderr}"
    );
    assert!(!stderr.contains("among a, b, c"), "{stderr}");
}
