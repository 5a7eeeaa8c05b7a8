//! Selector parser: tokens to `Node` by recursive descent (libcalico-go/lib/selector/parser), with the tree
//! shape Felix builds (single operands unwrapped, `!` runs collapsed by parity, no other
//! rewriting) because the canonical text printed from it is hashed into ipset names.
//! Recursion is bounded by `MAX_NESTING` parentheses; `!` runs are counted in a loop.

use super::ast::Node;
use super::lex::{Tok, Token};
use super::SelectorError;

/// Deepest parenthesis nesting accepted. Each level costs a few stack frames while parsing,
/// evaluating, printing and dropping, so this keeps every walk of the tree far from the stack
/// limit whatever the input.
pub const MAX_NESTING: usize = 128;

/// Parse a token list (ending in `Eof`) into a tree; no tokens but `Eof` means `all()`.
pub(crate) fn parse(tokens: &[Token<'_>]) -> Result<Node, SelectorError> {
    let mut parser = Parser { tokens, pos: 0 };
    if parser.peek().tok == Tok::Eof {
        return Ok(Node::All);
    }
    let node = parser.or_expr(0)?;
    let next = parser.peek();
    match next.tok {
        Tok::Eof => Ok(node),
        Tok::RParen => Err(err("unmatched ')'", next.offset)),
        other => Err(err(
            format!(
                "unexpected {} after a complete expression (missing '&&' or '||'?)",
                other.describe()
            ),
            next.offset,
        )),
    }
}

fn err(message: impl Into<String>, offset: usize) -> SelectorError {
    SelectorError {
        message: message.into(),
        offset,
    }
}

struct Parser<'t, 'a> {
    tokens: &'t [Token<'a>],
    pos: usize,
}

impl<'a> Parser<'_, 'a> {
    /// The current token; the list always ends in `Eof`, which is never consumed.
    fn peek(&self) -> Token<'a> {
        let last = self.tokens.len().saturating_sub(1);
        self.tokens
            .get(self.pos.min(last))
            .copied()
            .unwrap_or(Token {
                tok: Tok::Eof,
                offset: 0,
            })
    }

    fn advance(&mut self) -> Token<'a> {
        let token = self.peek();
        if token.tok != Tok::Eof {
            self.pos += 1;
        }
        token
    }

    fn or_expr(&mut self, depth: usize) -> Result<Node, SelectorError> {
        self.operands(depth, Tok::Or, Self::and_expr, Node::Or)
    }

    fn and_expr(&mut self, depth: usize) -> Result<Node, SelectorError> {
        self.operands(depth, Tok::And, Self::unary, Node::And)
    }

    /// One or more `operand`s separated by `op`: a single operand stands alone, several become
    /// one `join` node (flat, not nested: `a && b && c` is one And of three).
    fn operands(
        &mut self,
        depth: usize,
        op: Tok,
        operand: fn(&mut Self, usize) -> Result<Node, SelectorError>,
        join: fn(Vec<Node>) -> Node,
    ) -> Result<Node, SelectorError> {
        let mut operands = vec![operand(self, depth)?];
        while self.peek().tok == op {
            self.advance();
            operands.push(operand(self, depth)?);
        }
        Ok(if operands.len() == 1 {
            operands.swap_remove(0)
        } else {
            join(operands)
        })
    }

    fn unary(&mut self, depth: usize) -> Result<Node, SelectorError> {
        let mut negated = false;
        while self.peek().tok == Tok::Not {
            self.advance();
            negated = !negated;
        }
        let node = self.primary(depth)?;
        Ok(if negated {
            Node::Not(Box::new(node))
        } else {
            node
        })
    }

    fn primary(&mut self, depth: usize) -> Result<Node, SelectorError> {
        let token = self.advance();
        match token.tok {
            Tok::LParen => {
                if depth >= MAX_NESTING {
                    return Err(err(
                        format!("parentheses nested deeper than {MAX_NESTING}"),
                        token.offset,
                    ));
                }
                let inner = self.or_expr(depth + 1)?;
                let close = self.advance();
                if close.tok != Tok::RParen {
                    return Err(err(
                        format!(
                            "expected ')' to close the '(' at character {}, found {}",
                            token.offset,
                            close.tok.describe()
                        ),
                        close.offset,
                    ));
                }
                Ok(inner)
            }
            Tok::Has(label) => Ok(Node::Has(label.to_string())),
            Tok::All => Ok(Node::All),
            Tok::Global => Ok(Node::Global),
            Tok::Label(label) => self.comparison(label),
            Tok::Eof => Err(err(
                "unexpected end of selector, expected an expression",
                token.offset,
            )),
            other => Err(err(
                format!(
                    "expected an expression (a label comparison, has(), all() or '('), found {}",
                    other.describe()
                ),
                token.offset,
            )),
        }
    }

    /// `label <op> 'string'` or `label [not] in { … }`.
    fn comparison(&mut self, label: &str) -> Result<Node, SelectorError> {
        let op = self.advance();
        let key = label.to_string();
        let make: fn(String, String) -> Node = match op.tok {
            Tok::Eq => Node::Eq,
            Tok::Ne => Node::Ne,
            Tok::Contains => Node::Contains,
            Tok::StartsWith => Node::StartsWith,
            Tok::EndsWith => Node::EndsWith,
            Tok::In | Tok::NotIn => {
                let values = self.set(op)?;
                return Ok(if op.tok == Tok::In {
                    Node::In(key, values)
                } else {
                    Node::NotIn(key, values)
                });
            }
            other => {
                return Err(err(
                    format!(
                        "expected an operator after label '{label}' (==, !=, in, not in, \
                         contains, starts with, ends with), found {}",
                        other.describe()
                    ),
                    op.offset,
                ))
            }
        };
        let value = self.advance();
        match value.tok {
            Tok::Str(s) => Ok(make(key, s.to_string())),
            other => Err(err(
                format!(
                    "expected string literal after {}, found {}",
                    op.tok.describe(),
                    other.describe()
                ),
                value.offset,
            )),
        }
    }

    /// `{ 'a', 'b', }`: string items separated by commas, one trailing comma allowed, empty
    /// allowed. Returned sorted and de-duplicated (Felix's StringSet order, byte-wise).
    fn set(&mut self, op: Token<'a>) -> Result<Vec<String>, SelectorError> {
        let open = self.advance();
        if open.tok != Tok::LBrace {
            return Err(err(
                format!(
                    "expected '{{' (a set literal) after {}, found {}",
                    op.tok.describe(),
                    open.tok.describe()
                ),
                open.offset,
            ));
        }
        let mut values = Vec::new();
        loop {
            let item = self.advance();
            match item.tok {
                Tok::RBrace => break,
                Tok::Str(s) => values.push(s.to_string()),
                other => {
                    return Err(err(
                        format!(
                            "expected string literal or '}}' in set, found {}",
                            other.describe()
                        ),
                        item.offset,
                    ))
                }
            }
            let sep = self.advance();
            match sep.tok {
                Tok::Comma => {}
                Tok::RBrace => break,
                other => {
                    return Err(err(
                        format!("expected ',' or '}}' in set, found {}", other.describe()),
                        sep.offset,
                    ))
                }
            }
        }
        values.sort_unstable();
        values.dedup();
        Ok(values)
    }
}
