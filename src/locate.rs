//! Source positions for JSON documents: comment stripping and a path → line/column index.
//!
//! serde_json reports line and column for syntax and type errors, but a semantic error found
//! later (an unknown model, a reference to a missing object, a cycle) is about a value deep
//! inside the document. [`Index::build`] scans the text once more and remembers where every
//! value starts, keyed by its JSON pointer (`/initial/3/upsert/model`), so such an error can
//! point at the exact place.
//!
//! Scenario files may carry `//` and `/* */` comments: [`strip_comments`] blanks them out
//! with spaces (newlines kept), so positions in the stripped text are positions in the file.

use std::collections::BTreeMap;

/// A 1-based line and column in a file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

/// Replaces `//` line comments and `/* */` block comments outside strings with spaces,
/// keeping newlines, so that every position is unchanged.
pub fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        out.push(n);
                    }
                }
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                out.push(' ');
                for n in chars.by_ref() {
                    if n == '\n' {
                        out.push('\n');
                        break;
                    }
                    out.push(blank(n));
                }
            }
            ('/', Some('*')) => {
                chars.next();
                out.push_str("  ");
                let mut prev = ' ';
                for n in chars.by_ref() {
                    out.push(blank(n));
                    if prev == '*' && n == '/' {
                        break;
                    }
                    prev = n;
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// A comment character's replacement: a space, or the character itself if it is a line break.
fn blank(c: char) -> char {
    if c == '\n' || c == '\r' {
        c
    } else {
        ' '
    }
}

/// Where each value of a JSON document starts, by JSON pointer, and where each object key is.
#[derive(Debug, Default)]
pub struct Index {
    values: BTreeMap<String, Pos>,
}

impl Index {
    /// Indexes `text` (comments already stripped). Malformed input is indexed as far as it
    /// goes; this never fails.
    pub fn build(text: &str) -> Index {
        let mut s = Scanner {
            chars: text.chars().collect(),
            i: 0,
            line: 1,
            column: 1,
            index: Index::default(),
        };
        s.value(String::new(), 0);
        s.index
    }

    /// The position of the value at `pointer` (`""` is the document), or of its nearest
    /// indexed ancestor, or line 1 column 1.
    pub fn pos(&self, pointer: &str) -> Pos {
        let mut p = pointer;
        loop {
            if let Some(pos) = self.values.get(p) {
                return *pos;
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return Pos { line: 1, column: 1 },
            }
        }
    }
}

/// Escapes one JSON pointer segment (RFC 6901).
pub fn segment(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// Most nesting followed; deeper values are skipped (their ancestors stay indexed).
const DEPTH_MAX: usize = 128;

struct Scanner {
    chars: Vec<char>,
    i: usize,
    line: usize,
    column: usize,
    index: Index,
}

impl Scanner {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(c) if c.is_whitespace()) {
            self.bump();
        }
    }

    fn value(&mut self, pointer: String, depth: usize) {
        self.ws();
        let pos = Pos {
            line: self.line,
            column: self.column,
        };
        self.index.values.insert(pointer.clone(), pos);
        match self.peek() {
            Some('{') => {
                self.bump();
                loop {
                    self.ws();
                    match self.peek() {
                        Some('"') => {
                            let key = self.string();
                            self.ws();
                            if self.peek() == Some(':') {
                                self.bump();
                            }
                            let child = format!("{pointer}/{}", segment(&key));
                            if depth < DEPTH_MAX {
                                self.value(child, depth + 1);
                            } else {
                                self.skip_value();
                            }
                        }
                        Some(',') => {
                            self.bump();
                        }
                        Some('}') => {
                            self.bump();
                            return;
                        }
                        _ => return,
                    }
                }
            }
            Some('[') => {
                self.bump();
                let mut n = 0usize;
                loop {
                    self.ws();
                    match self.peek() {
                        Some(',') => {
                            self.bump();
                        }
                        Some(']') => {
                            self.bump();
                            return;
                        }
                        None => return,
                        Some(_) => {
                            let before = self.i;
                            if depth < DEPTH_MAX {
                                self.value(format!("{pointer}/{n}"), depth + 1);
                            } else {
                                self.skip_value();
                            }
                            n += 1;
                            if self.i == before {
                                return;
                            }
                        }
                    }
                }
            }
            Some('"') => {
                self.string();
            }
            Some(_) => self.scalar(),
            None => {}
        }
    }

    /// Skips a value without indexing it (beyond the depth limit), iteratively.
    fn skip_value(&mut self) {
        let mut depth = 0usize;
        loop {
            self.ws();
            match self.peek() {
                Some('"') => {
                    self.string();
                }
                Some('{' | '[') => {
                    self.bump();
                    depth += 1;
                }
                Some('}' | ']') => {
                    if depth == 0 {
                        return;
                    }
                    self.bump();
                    depth -= 1;
                }
                Some(',' | ':') if depth > 0 => {
                    self.bump();
                }
                Some(_) => self.scalar(),
                None => return,
            }
            if depth == 0 {
                return;
            }
        }
    }

    fn scalar(&mut self) {
        let start = self.i;
        while matches!(self.peek(), Some(c) if !c.is_whitespace() && !matches!(c, ',' | '}' | ']' | ':'))
        {
            self.bump();
        }
        if self.i == start {
            self.bump();
        }
    }

    /// Reads a string literal (the cursor is on its opening quote) and returns its value.
    fn string(&mut self) -> String {
        self.bump();
        let mut s = String::new();
        while let Some(c) = self.bump() {
            match c {
                '"' => break,
                '\\' => match self.bump() {
                    Some('n') => s.push('\n'),
                    Some('t') => s.push('\t'),
                    Some('r') => s.push('\r'),
                    Some('b') => s.push('\u{8}'),
                    Some('f') => s.push('\u{c}'),
                    Some('u') => {
                        let hex: String = (0..4).filter_map(|_| self.bump()).collect();
                        if let Some(ch) =
                            u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32)
                        {
                            s.push(ch);
                        }
                    }
                    Some(other) => s.push(other),
                    None => break,
                },
                c => s.push(c),
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_blanked_in_place() {
        let text = "{ // a comment\n \"a\": \"x // not\", /* b\n c */ \"b\": 1 }";
        let s = strip_comments(text);
        assert_eq!(s.len(), text.len());
        assert_eq!(s.lines().count(), text.lines().count());
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["a"], "x // not");
        assert_eq!(v["b"], 1);
    }

    #[test]
    fn pointers_map_to_positions() {
        let text = "{\n  \"a\": [1,\n    {\"k\": \"v\"}],\n  \"b~/c\": null\n}";
        let idx = Index::build(text);
        assert_eq!(idx.pos("/a"), Pos { line: 2, column: 8 });
        assert_eq!(
            idx.pos("/a/1/k"),
            Pos {
                line: 3,
                column: 11
            }
        );
        assert_eq!(
            idx.pos("/b~0~1c"),
            Pos {
                line: 4,
                column: 11
            }
        );
        // Unknown children fall back to their nearest ancestor.
        assert_eq!(idx.pos("/a/1/zzz"), Pos { line: 3, column: 5 });
    }

    #[test]
    fn truncated_input_does_not_panic() {
        for text in ["{\"a\": [1, {\"b\": \"x", "[", "{\"a\"", "\"\\u12", "{{{{"] {
            let _ = Index::build(text);
        }
    }
}
