//! The terminal report.

/// `error` in red unless `NO_COLOR` is set or stderr is not a terminal.
pub fn error_label() -> &'static str {
    use std::io::IsTerminal;
    if std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal() {
        "\x1b[1;31merror\x1b[0m"
    } else {
        "error"
    }
}
