//! What the examples share on the command line: printing an error with its causes.

/// The error and its causes on one line: "failed to bind 1.2.3.4:80: permission
/// denied" — the library keeps causes apart (`source()`), a terminal wants them
/// together.
pub fn one_line(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        line.push_str(": ");
        line.push_str(&s.to_string());
        source = s.source();
    }
    line
}
