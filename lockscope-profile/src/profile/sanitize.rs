//! sanitize: strings the target controls (its `comm`, thread names, symbol and file names in
//! its binaries, paths) or a profile file carries are escaped before they reach a terminal, so
//! a traced program cannot retitle the window, clear the screen or colour the report. CSV and
//! JSON keep the exact bytes, escaped by their own rules.
use std::borrow::Cow;

use serde_json::Value;

use crate::profile::Profile;

/// Characters that move the cursor, ring, start escape sequences (C0, DEL, C1) or reorder
/// text on screen (bidirectional overrides and isolates).
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every unsafe character written as a Rust escape (`\u{1b}`, `\n`).
pub fn term_safe(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| {
                if is_unsafe(c) {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

fn walk(v: &mut Value) {
    match v {
        Value::String(s) => {
            if let Cow::Owned(safe) = term_safe(s) {
                *s = safe;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(walk),
        Value::Object(o) => o.values_mut().for_each(walk),
        _ => {}
    }
}

/// A copy of `p` whose every string is [`term_safe`]: what the table renderer is given. Done
/// on the serialized form, so a field added later is covered without a change here.
pub fn for_terminal(p: &Profile) -> Profile {
    let Ok(mut v) = serde_json::to_value(p) else {
        return p.clone();
    };
    walk(&mut v);
    serde_json::from_value(v).unwrap_or_else(|_| p.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::tests::sample;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(term_safe("worker-1"), "worker-1");
        assert_eq!(term_safe("\u{1b}]0;pwned\u{7}x"), "\\u{1b}]0;pwned\\u{7}x");
        assert_eq!(term_safe("a\nb\rc"), "a\\nb\\rc");
        assert_eq!(term_safe("\u{9b}2J"), "\\u{9b}2J");
        assert_eq!(term_safe("\u{202e}gnp.exe"), "\\u{202e}gnp.exe");
        assert_eq!(term_safe("Mutex<T>::lock"), "Mutex<T>::lock");
    }

    #[test]
    fn every_string_of_a_profile_is_escaped() {
        let mut p = sample();
        p.meta.comm = "\u{1b}[2Jevil".into();
        p.threads.insert(9, "\u{1b}]0;title\u{7}".into());
        p.stacks[0].frames[0].syms[0].name = "f\u{1b}[31m".into();
        let safe = for_terminal(&p);
        let text = serde_json::to_string(&safe).unwrap();
        assert!(!text.contains("\\u001b"), "{text}");
        assert_eq!(safe.meta.comm, "\\u{1b}[2Jevil");
        assert_eq!(safe.threads[&9], "\\u{1b}]0;title\\u{7}");
        assert_eq!(safe.stacks[0].frames[0].syms[0].name, "f\\u{1b}[31m");
    }
}
