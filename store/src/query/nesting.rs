//! A bound on how deeply a query nests, checked on its tokens before it is parsed.
//!
//! The SQL parser recurses into parentheses, subqueries, `CASE` and prefix operators, and stops
//! at its own recursion limit; but chains of infix and postfix operators (`1+1+...+1`,
//! `a OR b OR ...`, `x::int::int`), of set operations (`UNION ALL ...`) and of joins are parsed
//! in a loop into trees as deep as the chain is long. Everything after the parser (dropping the
//! syntax tree, planning, optimizing, evaluating an expression) recurses over those trees, so a
//! long enough chain overflows any stack. [`check`] estimates the depth from the tokens alone
//! (the tokenizer does not recurse) and refuses a query beyond [`MAX_NESTING`], before anything
//! recursive sees it; the query threads' stacks are sized so that a query within the bound fits
//! with a wide margin.
//!
//! The estimate is an upper bound of the depth of the trees a query becomes: per parenthesis
//! group, the operators since the last comma (a comma separates list items, which are siblings),
//! plus every set operation and join of the group (a comma in a `FROM` clause is a join), plus one
//! per enclosing group.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::error::{Error, Result};

/// The deepest a query may nest (see the module documentation for how it is counted): a chain
/// of 1,000 terms (`1+1+...+1`), 500 `OR`ed comparisons or 1,000 `UNION ALL`s pass.
pub(crate) const MAX_NESTING: usize = 1000;

/// One parenthesis (or bracket, or brace) group being read.
#[derive(Debug, Default)]
struct Group {
    /// Operators since the last comma of the group.
    chain: usize,
    /// Set operations and joins of the group (never reset by a comma).
    chained_queries: usize,
    /// Inside a `FROM` clause, where a comma is a join.
    in_from: bool,
}

impl Group {
    fn depth(&self) -> usize {
        self.chain + self.chained_queries + 1
    }
}

/// Refuses `sql` with [`Error::InvalidParameter`] ("too deeply nested") when its estimated depth
/// is over [`MAX_NESTING`]. A query that does not tokenize passes (the parser reports it).
pub(crate) fn check(sql: &str) -> Result<()> {
    let depth = estimate(sql);
    if depth > MAX_NESTING {
        return Err(Error::InvalidParameter(format!(
            "SQL query too deeply nested: about {depth} levels of operators, set operations or \
             joins, more than the limit of {MAX_NESTING} (use IN (...) instead of a chain of \
             ORs, or split the query)"
        )));
    }
    Ok(())
}

/// The estimated depth of `sql` (0 when it does not tokenize).
fn estimate(sql: &str) -> usize {
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else {
        return 0;
    };
    let mut stack = vec![Group::default()];
    // The sum of the depths of the groups on the stack, kept as they change.
    let mut depth = 1usize;
    let mut max = depth;
    for token in &tokens {
        let top = stack.last_mut().expect("the outermost group stays");
        match token {
            Token::LParen | Token::LBracket | Token::LBrace => {
                stack.push(Group::default());
                depth += 1;
            }
            Token::RParen | Token::RBracket | Token::RBrace => {
                if stack.len() > 1 {
                    let group = stack.pop().expect("checked");
                    depth -= group.depth();
                }
            }
            Token::Comma if top.in_from => {
                top.chained_queries += 1;
                depth += 1;
            }
            Token::Comma => {
                depth -= top.chain;
                top.chain = 0;
            }
            Token::Word(word) => match word.keyword {
                Keyword::UNION | Keyword::EXCEPT | Keyword::INTERSECT | Keyword::MINUS => {
                    top.chained_queries += 1;
                    top.in_from = false;
                    depth += 1;
                }
                Keyword::JOIN => {
                    top.chained_queries += 1;
                    depth += 1;
                }
                Keyword::FROM => top.in_from = true,
                Keyword::WHERE
                | Keyword::GROUP
                | Keyword::HAVING
                | Keyword::ORDER
                | Keyword::LIMIT
                | Keyword::OFFSET
                | Keyword::WINDOW
                | Keyword::QUALIFY
                | Keyword::SELECT => top.in_from = false,
                Keyword::AND
                | Keyword::OR
                | Keyword::XOR
                | Keyword::NOT
                | Keyword::IS
                | Keyword::LIKE
                | Keyword::ILIKE
                | Keyword::SIMILAR
                | Keyword::RLIKE
                | Keyword::REGEXP
                | Keyword::IN
                | Keyword::BETWEEN
                | Keyword::AT
                | Keyword::COLLATE
                | Keyword::OVERLAPS
                | Keyword::DIV
                | Keyword::MOD => {
                    top.chain += 1;
                    depth += 1;
                }
                _ => {}
            },
            token if is_operand(token) => {}
            // Every other token is an operator or a separator of one (`+`, `||`, `::`, `.`, `->` ...).
            _ => {
                top.chain += 1;
                depth += 1;
            }
        }
        max = max.max(depth);
    }
    max
}

/// Tokens that are neither operators nor groupings: names, literals, whitespace, placeholders.
fn is_operand(token: &Token) -> bool {
    matches!(
        token,
        Token::EOF
            | Token::Word(_)
            | Token::Number(..)
            | Token::Char(_)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::TripleSingleQuotedByteStringLiteral(_)
            | Token::TripleDoubleQuotedByteStringLiteral(_)
            | Token::SingleQuotedRawStringLiteral(_)
            | Token::DoubleQuotedRawStringLiteral(_)
            | Token::TripleSingleQuotedRawStringLiteral(_)
            | Token::TripleDoubleQuotedRawStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::QuoteDelimitedStringLiteral(_)
            | Token::NationalQuoteDelimitedStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::Whitespace(_)
            | Token::SemiColon
            | Token::Placeholder(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize, term: &str, op: &str) -> String {
        vec![term; n].join(op)
    }

    #[test]
    fn chains_count_their_operators_and_lists_do_not() {
        let sum = format!("SELECT {}", chain(1000, "1", "+"));
        assert!(estimate(&sum) <= MAX_NESTING, "{}", estimate(&sum));
        assert!(estimate(&format!("SELECT {}", chain(1002, "1", "+"))) > MAX_NESTING);
        let ors = format!("SELECT 1 WHERE {}", chain(2000, "x = 1", " OR "));
        assert!(estimate(&ors) > MAX_NESTING);
        let unions = chain(1001, "SELECT 1, 2, 3", " UNION ALL ");
        assert!(estimate(&unions) > MAX_NESTING);
        let joins = format!("SELECT 1 FROM {}", chain(1001, "runs", ", "));
        assert!(estimate(&joins) > MAX_NESTING);
        // Flat lists are siblings, however long.
        let list = format!("SELECT 1 WHERE x IN ({})", chain(5000, "-1", ", "));
        assert!(estimate(&list) < 10, "{}", estimate(&list));
        let columns = format!("SELECT {} FROM runs", chain(3000, "a + 1", ", "));
        assert!(estimate(&columns) < 10);
        assert!(check("SELECT 1 +").is_ok());
        assert!(check(&format!("SELECT {}", chain(3000, "1", "+")))
            .unwrap_err()
            .to_string()
            .contains("too deeply nested"));
    }
}
