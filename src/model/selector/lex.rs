//! Selector lexer: turns selector text into tokens with byte offsets (libcalico-go/lib/selector/tokenizer).
//! Pure and linear in the input; it knows nothing of the grammar beyond "word operators only
//! follow a label", which the language defines lexically.

use super::SelectorError;

/// Longest label Calico accepts (`[A-Za-z0-9_./-]{1,512}`).
pub const MAX_LABEL_LEN: usize = 512;

/// One lexical token. Borrowed strings point into the selector text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tok<'a> {
    Label(&'a str),
    Str(&'a str),
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
    Eq,
    Ne,
    Not,
    And,
    Or,
    In,
    NotIn,
    Contains,
    StartsWith,
    EndsWith,
    Has(&'a str),
    All,
    Global,
    Eof,
}

impl Tok<'_> {
    /// How the token reads in an error message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Label(l) => format!("label '{l}'"),
            Tok::Str(_) => "string literal".to_string(),
            Tok::LParen => "'('".to_string(),
            Tok::RParen => "')'".to_string(),
            Tok::LBrace => "'{'".to_string(),
            Tok::RBrace => "'}'".to_string(),
            Tok::Comma => "','".to_string(),
            Tok::Eq => "'=='".to_string(),
            Tok::Ne => "'!='".to_string(),
            Tok::Not => "'!'".to_string(),
            Tok::And => "'&&'".to_string(),
            Tok::Or => "'||'".to_string(),
            Tok::In => "'in'".to_string(),
            Tok::NotIn => "'not in'".to_string(),
            Tok::Contains => "'contains'".to_string(),
            Tok::StartsWith => "'starts with'".to_string(),
            Tok::EndsWith => "'ends with'".to_string(),
            Tok::Has(_) => "'has(…)'".to_string(),
            Tok::All => "'all()'".to_string(),
            Tok::Global => "'global()'".to_string(),
            Tok::Eof => "end of selector".to_string(),
        }
    }
}

/// A token and the byte offset where it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token<'a> {
    pub(crate) tok: Tok<'a>,
    pub(crate) offset: usize,
}

fn is_label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-')
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn err(message: impl Into<String>, offset: usize) -> SelectorError {
    SelectorError {
        message: message.into(),
        offset,
    }
}

/// Tokenise `text`; the last token is always `Eof` (at `text.len()`).
pub(crate) fn tokenize(text: &str) -> Result<Vec<Token<'_>>, SelectorError> {
    Lexer {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        tokens: Vec::new(),
    }
    .run()
}

struct Lexer<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    tokens: Vec<Token<'a>>,
}

impl<'a> Lexer<'a> {
    fn run(mut self) -> Result<Vec<Token<'a>>, SelectorError> {
        loop {
            self.skip_blanks();
            let start = self.pos;
            let Some(&b) = self.bytes.get(start) else {
                self.tokens.push(Token {
                    tok: Tok::Eof,
                    offset: start,
                });
                return Ok(self.tokens);
            };
            let tok = match b {
                b'\n' | b'\r' => {
                    return Err(err(
                        "line break outside a string literal (a YAML block scalar leaves one at \
                         the end)",
                        start,
                    ))
                }
                b'(' => self.single(Tok::LParen),
                b')' => self.single(Tok::RParen),
                b'{' => self.single(Tok::LBrace),
                b'}' => self.single(Tok::RBrace),
                b',' => self.single(Tok::Comma),
                b'"' | b'\'' => self.string(b)?,
                b'=' => self.double(b'=', Tok::Eq, "single '=' is not an operator (use '==')")?,
                b'&' => self.double(b'&', Tok::And, "single '&' is not an operator (use '&&')")?,
                b'|' => self.double(b'|', Tok::Or, "single '|' is not an operator (use '||')")?,
                b'!' => {
                    if self.bytes.get(start + 1) == Some(&b'=') {
                        self.pos += 2;
                        Tok::Ne
                    } else {
                        self.single(Tok::Not)
                    }
                }
                _ => self.word()?,
            };
            self.tokens.push(Token { tok, offset: start });
        }
    }

    fn skip_blanks(&mut self) {
        while self.bytes.get(self.pos).copied().is_some_and(is_blank) {
            self.pos += 1;
        }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn single(&mut self, tok: Tok<'a>) -> Tok<'a> {
        self.pos += 1;
        tok
    }

    fn double(
        &mut self,
        second: u8,
        tok: Tok<'a>,
        message: &str,
    ) -> Result<Tok<'a>, SelectorError> {
        if self.bytes.get(self.pos + 1) == Some(&second) {
            self.pos += 2;
            Ok(tok)
        } else {
            Err(err(message, self.pos))
        }
    }

    /// A quoted literal: up to the next identical quote, no escapes; anything goes inside.
    fn string(&mut self, quote: u8) -> Result<Tok<'a>, SelectorError> {
        let open = self.pos;
        let body_start = open + 1;
        match self.bytes[body_start..].iter().position(|&c| c == quote) {
            Some(len) => {
                self.pos = body_start + len + 1;
                Ok(Tok::Str(&self.text[body_start..body_start + len]))
            }
            None => Err(err("unterminated string literal", open)),
        }
    }

    /// A run of label characters at the current position (possibly empty), checked for length.
    fn label(&mut self) -> Result<&'a str, SelectorError> {
        let start = self.pos;
        let len = self.bytes[start..]
            .iter()
            .take_while(|&&c| is_label_byte(c))
            .count();
        if len > MAX_LABEL_LEN {
            return Err(err(
                format!("label longer than {MAX_LABEL_LEN} characters ({len})"),
                start,
            ));
        }
        self.pos += len;
        Ok(&self.text[start..start + len])
    }

    fn eat(&mut self, word: &str) -> bool {
        if self.rest().starts_with(word) {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    fn at_word_boundary(&self) -> bool {
        !self.bytes.get(self.pos).copied().is_some_and(is_label_byte)
    }

    fn word(&mut self) -> Result<Tok<'a>, SelectorError> {
        let start = self.pos;
        if let Some(Token {
            tok: Tok::Label(label),
            ..
        }) = self.tokens.last()
        {
            let label = *label;
            return self.word_operator(label, start);
        }
        if self.eat("has(") {
            self.skip_blanks();
            let name_at = self.pos;
            let name = self.label()?;
            if name.is_empty() {
                return Err(err("has() needs a label name", name_at));
            }
            self.skip_blanks();
            if !self.eat(")") {
                return Err(err("expected ')' to close 'has('", self.pos));
            }
            return Ok(Tok::Has(name));
        }
        for (word, tok) in [("all(", Tok::All), ("global(", Tok::Global)] {
            if self.eat(word) {
                self.skip_blanks();
                if !self.eat(")") {
                    return Err(err(format!("expected ')' after '{word}'"), self.pos));
                }
                return Ok(tok);
            }
        }
        let label = self.label()?;
        if label.is_empty() {
            let found = self.rest().chars().next().unwrap_or(' ');
            return Err(err(format!("unexpected character {found:?}"), start));
        }
        Ok(Tok::Label(label))
    }

    /// Right after a label only a word operator may follow (`==` and friends were handled
    /// before). Two-word operators allow any blank run, including none, between the words.
    fn word_operator(&mut self, label: &str, start: usize) -> Result<Tok<'a>, SelectorError> {
        let expected = || {
            err(
                format!(
                    "expected an operator after label '{label}' (==, !=, in, not in, contains, \
                     starts with, ends with)"
                ),
                start,
            )
        };
        // (first word, second word if any, token); `in` after `not` so `not in` wins.
        const WORD_OPERATORS: [(&str, Option<&str>, Tok<'static>); 5] = [
            ("contains", None, Tok::Contains),
            ("starts", Some("with"), Tok::StartsWith),
            ("ends", Some("with"), Tok::EndsWith),
            ("not", Some("in"), Tok::NotIn),
            ("in", None, Tok::In),
        ];
        let Some(&(_, second, tok)) = WORD_OPERATORS.iter().find(|(first, ..)| self.eat(first))
        else {
            return Err(expected());
        };
        if let Some(second) = second {
            self.skip_blanks();
            if !self.eat(second) {
                return Err(expected());
            }
        }
        if !self.at_word_boundary() {
            return Err(err(
                format!(
                    "expected an operator after label '{label}': {} must not be followed by a \
                     label character",
                    Tok::describe(&tok)
                ),
                start,
            ));
        }
        Ok(tok)
    }
}
