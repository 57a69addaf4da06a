//! Request paths the gateway forwards: no dot segments (`..`, `.`, also `%2e%2e`), no
//! encoded `/` or `\\`, no backslash, so a joined URL cannot leave the relay's base path.
//! Used by the relay client and by config validation (`relay.forward_routes`).

fn is_dot_segment(segment: &str) -> bool {
    let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
    decoded == "." || decoded == ".."
}

/// Whether a request path (no query) is one the gateway forwards: no dot segments, no
/// encoded `/` or `\`, no backslash.
pub fn is_safe_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    let encoded_separator = ["%2f", "%5c", "\\"].iter().any(|s| lower.contains(s));
    !encoded_separator && !path.split('/').any(is_dot_segment)
}
