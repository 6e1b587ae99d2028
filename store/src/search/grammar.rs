//! MLflow's filter grammar, shared by every search: comparisons joined by `AND`, and `order_by`
//! clauses.
//!
//! The grammar follows `mlflow/utils/search_utils.py`: an identifier is `<entity>.<key>` (the key
//! unquoted, `` `backticked` `` or `"double-quoted"`; no entity means an attribute), a comparator
//! (`= != < <= > >= LIKE ILIKE IN NOT IN IS NULL IS NOT NULL`, keywords in any case) and a value
//! (a quoted string, a number, or a parenthesized list of strings for `IN`). Which entities, keys
//! and comparators are allowed is decided by each search, which turns clauses into [`Test`]s.
//! Every failure is an [`Error::InvalidParameter`] whose message names the problem.

use crate::error::{Error, Result};

fn invalid(message: String) -> Error {
    Error::InvalidParameter(message)
}

/// What kind of thing an identifier names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entity {
    /// `attributes.` (or no prefix).
    Attribute,
    /// `metrics.`.
    Metric,
    /// `params.`.
    Param,
    /// `tags.`.
    Tag,
    /// `datasets.`.
    Dataset,
}

impl Entity {
    fn parse(prefix: &str) -> Result<Entity> {
        // Case-sensitive, as MLflow: `METRICS.x` is an unknown entity.
        Ok(match prefix {
            "attribute" | "attributes" | "attr" | "run" => Entity::Attribute,
            "metric" | "metrics" => Entity::Metric,
            "param" | "params" | "parameter" | "parameters" => Entity::Param,
            "tag" | "tags" => Entity::Tag,
            "dataset" | "datasets" => Entity::Dataset,
            _ => {
                return Err(invalid(format!(
                    "Invalid entity type '{prefix}'. Valid values are ['metric', 'parameter', \
                     'tag', 'attribute', 'dataset']"
                )))
            }
        })
    }

    /// The entity as MLflow names it in messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Entity::Attribute => "attribute",
            Entity::Metric => "metric",
            Entity::Param => "parameter",
            Entity::Tag => "tag",
            Entity::Dataset => "dataset",
        }
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Comparator {
    /// `=`.
    Eq,
    /// `!=`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `LIKE` (case-sensitive, `%` and `_` wildcards).
    Like,
    /// `ILIKE` (case-insensitive).
    ILike,
    /// `IN (...)`.
    In,
    /// `NOT IN (...)`.
    NotIn,
    /// `IS NULL`.
    IsNull,
    /// `IS NOT NULL`.
    IsNotNull,
}

impl Comparator {
    fn as_str(self) -> &'static str {
        match self {
            Comparator::Eq => "=",
            Comparator::Ne => "!=",
            Comparator::Lt => "<",
            Comparator::Le => "<=",
            Comparator::Gt => ">",
            Comparator::Ge => ">=",
            Comparator::Like => "LIKE",
            Comparator::ILike => "ILIKE",
            Comparator::In => "IN",
            Comparator::NotIn => "NOT IN",
            Comparator::IsNull => "IS NULL",
            Comparator::IsNotNull => "IS NOT NULL",
        }
    }
}

/// The comparators of numeric fields.
pub(crate) const NUMERIC_OPS: &[Comparator] = &[
    Comparator::Eq,
    Comparator::Ne,
    Comparator::Gt,
    Comparator::Ge,
    Comparator::Lt,
    Comparator::Le,
];
/// The comparators of string attributes.
pub(crate) const STRING_OPS: &[Comparator] = &[
    Comparator::Eq,
    Comparator::Ne,
    Comparator::Like,
    Comparator::ILike,
];
/// The comparators of string attributes that also take lists.
pub(crate) const STRING_LIST_OPS: &[Comparator] = &[
    Comparator::Eq,
    Comparator::Ne,
    Comparator::Like,
    Comparator::ILike,
    Comparator::In,
    Comparator::NotIn,
];
/// The comparators of params and tags.
pub(crate) const KEY_VALUE_OPS: &[Comparator] = &[
    Comparator::Eq,
    Comparator::Ne,
    Comparator::Like,
    Comparator::ILike,
    Comparator::IsNull,
    Comparator::IsNotNull,
];

/// The right-hand side of a comparison, as written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    /// None (`IS NULL`, `IS NOT NULL`).
    Nothing,
    /// A quoted string.
    Str(String),
    /// An unquoted token (a number, if valid).
    Bare(String),
    /// A parenthesized list of quoted strings.
    List(Vec<String>),
}

/// One comparison of a filter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Clause {
    /// The entity prefix as written (`attributes`, `tag` ...), `None` for a bare attribute.
    pub(crate) prefix: Option<String>,
    /// What the identifier names.
    pub(crate) entity: Entity,
    /// The key (metric, param or tag name, attribute name).
    pub(crate) key: String,
    /// The comparator.
    pub(crate) comparator: Comparator,
    /// The value.
    pub(crate) value: Literal,
}

/// A check of one field of an entity, built from a clause.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Test {
    /// A string comparison (`=`, `!=`, `LIKE`, `ILIKE`).
    Str(Comparator, String),
    /// Membership (`IN` when true, `NOT IN` when false).
    List(bool, Vec<String>),
    /// A numeric comparison.
    Num(Comparator, f64),
    /// `IS NULL` when true, `IS NOT NULL` when false.
    Null(bool),
}

impl Test {
    /// Builds the test of a string-valued field, allowing the comparators in `allowed`.
    pub(crate) fn string(clause: &Clause, allowed: &[Comparator]) -> Result<Test> {
        check_comparator(clause, allowed)?;
        Ok(match (&clause.comparator, &clause.value) {
            (Comparator::IsNull, _) => Test::Null(true),
            (Comparator::IsNotNull, _) => Test::Null(false),
            (Comparator::In, Literal::List(l)) => Test::List(true, l.clone()),
            (Comparator::NotIn, Literal::List(l)) => Test::List(false, l.clone()),
            (c, Literal::Str(s)) => Test::Str(*c, s.clone()),
            (_, other) => {
                return Err(invalid(format!(
                    "{} value is either not quoted or unidentified quote types used for string \
                     value {}. Use either single or double quotes.",
                    capitalized(clause.entity.name()),
                    literal_text(other)
                )))
            }
        })
    }

    /// Builds the test of a numeric field, allowing the comparators in `allowed`.
    pub(crate) fn number(clause: &Clause, allowed: &[Comparator]) -> Result<Test> {
        check_comparator(clause, allowed)?;
        match &clause.value {
            Literal::Bare(s) => match s.parse::<f64>() {
                Ok(v)
                    if !s.eq_ignore_ascii_case("nan")
                        && !s.to_ascii_lowercase().contains("inf") =>
                {
                    Ok(Test::Num(clause.comparator, v))
                }
                _ => Err(expected_numeric(clause, s)),
            },
            other => Err(expected_numeric(clause, &literal_text(other))),
        }
    }

    /// Whether a string field with value `v` (`None` if absent) passes.
    pub(crate) fn on_str(&self, v: Option<&str>) -> bool {
        match (self, v) {
            (Test::Null(is_null), v) => v.is_none() == *is_null,
            (_, None) => false,
            (Test::Str(c, expected), Some(actual)) => match c {
                Comparator::Eq => actual == expected,
                Comparator::Ne => actual != expected,
                Comparator::Like => like(expected, actual, false),
                Comparator::ILike => like(expected, actual, true),
                _ => false,
            },
            (Test::List(inside, items), Some(actual)) => {
                items.iter().any(|i| i == actual) == *inside
            }
            (Test::Num(..), Some(_)) => false,
        }
    }

    /// Whether a numeric field with value `v` (`None` if absent) passes.
    pub(crate) fn on_num(&self, v: Option<f64>) -> bool {
        let (Test::Num(c, expected), Some(actual)) = (self, v) else {
            return false;
        };
        match c {
            Comparator::Eq => actual == *expected,
            Comparator::Ne => actual != *expected,
            Comparator::Lt => actual < *expected,
            Comparator::Le => actual <= *expected,
            Comparator::Gt => actual > *expected,
            Comparator::Ge => actual >= *expected,
            _ => false,
        }
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn literal_text(l: &Literal) -> String {
    match l {
        Literal::Nothing => "NULL".into(),
        Literal::Str(s) => format!("'{s}'"),
        Literal::Bare(s) => s.clone(),
        Literal::List(items) => format!("{items:?}"),
    }
}

fn expected_numeric(clause: &Clause, found: &str) -> Error {
    invalid(format!(
        "Expected numeric value type for {}. Found {found}",
        clause.entity.name()
    ))
}

fn check_comparator(clause: &Clause, allowed: &[Comparator]) -> Result<()> {
    if allowed.contains(&clause.comparator) {
        return Ok(());
    }
    let names: Vec<&str> = allowed.iter().map(|c| c.as_str()).collect();
    Err(invalid(format!(
        "Invalid comparator '{}' not one of '{names:?}' for {} '{}'",
        clause.comparator.as_str(),
        clause.entity.name(),
        clause.key
    )))
}

/// SQL `LIKE`: `%` matches any run of characters, `_` exactly one.
pub(crate) fn like(pattern: &str, text: &str, case_insensitive: bool) -> bool {
    let fold = |s: &str| -> Vec<char> {
        if case_insensitive {
            s.to_lowercase().chars().collect()
        } else {
            s.chars().collect()
        }
    };
    let (p, t) = (fold(pattern), fold(text));
    // Greedy matching with backtracking to the last '%': linear in practice.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        // A '%' in the pattern is always a wildcard, even against a '%' in the text.
        if pi < p.len() && p[pi] != '%' && (p[pi] == '_' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '%' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '%')
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// An unquoted run of characters: identifier, keyword or number.
    Word(String),
    /// A `'single'` or `"double"` quoted string and its quote.
    Quoted(String, char),
    /// A `` `backticked` `` name.
    Backtick(String),
    /// `= != < <= > >=`.
    Op(&'static str),
    LParen,
    RParen,
    Comma,
}

fn lex(input: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Token::LParen);
                i += 1;
            }
            ')' => {
                out.push(Token::RParen);
                i += 1;
            }
            ',' => {
                out.push(Token::Comma);
                i += 1;
            }
            '=' => {
                // `==` is not SQL: kept as written so that it is refused as a comparator.
                let double = chars.get(i + 1) == Some(&'=');
                out.push(Token::Op(if double { "==" } else { "=" }));
                i += if double { 2 } else { 1 };
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                out.push(Token::Op("!="));
                i += 2;
            }
            '<' | '>' => {
                let eq = chars.get(i + 1) == Some(&'=');
                // `<>` is refused as MLflow does (its comparators are `=` and `!=`).
                let ne = c == '<' && chars.get(i + 1) == Some(&'>');
                out.push(Token::Op(match (c, eq, ne) {
                    (_, _, true) => "<>",
                    ('<', true, _) => "<=",
                    ('<', false, _) => "<",
                    (_, true, _) => ">=",
                    _ => ">",
                }));
                i += if eq || ne { 2 } else { 1 };
            }
            '\'' | '"' | '`' => {
                let quote = c;
                let mut s = String::new();
                i += 1;
                // As MLflow (sqlparse): `\'` and `''` do not end a quoted string, but the value
                // is the text between the quotes as written, escapes included.
                loop {
                    match chars.get(i) {
                        None => return Err(format!("unterminated {quote} quote")),
                        Some('\\') if quote != '`' && chars.get(i + 1) == Some(&quote) => {
                            s.push('\\');
                            s.push(quote);
                            i += 2;
                        }
                        Some(&q) if q == quote => {
                            if quote != '`' && chars.get(i + 1) == Some(&quote) {
                                s.push(quote);
                                s.push(quote);
                                i += 2;
                            } else {
                                i += 1;
                                break;
                            }
                        }
                        Some(&other) => {
                            s.push(other);
                            i += 1;
                        }
                    }
                }
                out.push(if quote == '`' {
                    Token::Backtick(s)
                } else {
                    Token::Quoted(s, quote)
                });
            }
            _ => {
                let start = i;
                while i < chars.len()
                    && !chars[i].is_whitespace()
                    && !"=!<>(),'\"`".contains(chars[i])
                {
                    i += 1;
                }
                if i == start {
                    return Err(format!("unexpected character '{c}'"));
                }
                out.push(Token::Word(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(out)
}

/// An identifier: the prefix as written, the entity and the key.
type Identifier = (Option<String>, Entity, String);

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn peek_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    /// `(prefix as written, entity, key)`; a parse problem is the inner `Err`, an unknown
    /// entity the outer one.
    fn identifier(&mut self) -> Result<Result<Identifier, String>> {
        Ok(Ok(match self.next() {
            Some(Token::Word(w)) => {
                if let Some(prefix) = w.strip_suffix('.') {
                    let entity = Entity::parse(prefix)?;
                    match self.next() {
                        Some(Token::Backtick(k)) | Some(Token::Quoted(k, '"')) => {
                            (Some(prefix.to_string()), entity, k)
                        }
                        other => {
                            return Ok(Err(format!("expected a key after '{w}', got {other:?}")))
                        }
                    }
                } else if let Some((prefix, key)) = w.split_once('.') {
                    (
                        Some(prefix.to_string()),
                        Entity::parse(prefix)?,
                        key.to_string(),
                    )
                } else {
                    (None, Entity::Attribute, w)
                }
            }
            // A quoted name without prefix is an attribute (`"run_name" = 'x'`).
            Some(Token::Backtick(k)) | Some(Token::Quoted(k, '"')) => (None, Entity::Attribute, k),
            other => return Ok(Err(format!("expected an identifier, got {other:?}"))),
        }))
    }

    fn comparator(&mut self) -> Result<Comparator, String> {
        match self.next() {
            Some(Token::Op(op @ ("==" | "<>"))) => Err(format!(
                "Invalid comparator '{op}' not one of '['=', '!=', '>', '>=', '<', '<=', 'LIKE', \
                 'ILIKE', 'IN', 'NOT IN', 'IS NULL', 'IS NOT NULL']'"
            )),
            Some(Token::Op(op)) => Ok(match op {
                "=" => Comparator::Eq,
                "!=" => Comparator::Ne,
                "<" => Comparator::Lt,
                "<=" => Comparator::Le,
                ">" => Comparator::Gt,
                _ => Comparator::Ge,
            }),
            Some(Token::Word(w)) => match w.to_ascii_uppercase().as_str() {
                "LIKE" => Ok(Comparator::Like),
                "ILIKE" => Ok(Comparator::ILike),
                "IN" => Ok(Comparator::In),
                "NOT" if self.peek_keyword("IN") => {
                    self.pos += 1;
                    Ok(Comparator::NotIn)
                }
                "IS" => {
                    let not = self.peek_keyword("NOT");
                    if not {
                        self.pos += 1;
                    }
                    if !self.peek_keyword("NULL") {
                        return Err("expected NULL after IS".into());
                    }
                    self.pos += 1;
                    Ok(if not {
                        Comparator::IsNotNull
                    } else {
                        Comparator::IsNull
                    })
                }
                other => Err(format!("unknown comparator '{other}'")),
            },
            other => Err(format!("expected a comparator, got {other:?}")),
        }
    }

    fn value(&mut self, comparator: Comparator) -> Result<Literal, String> {
        match comparator {
            Comparator::IsNull | Comparator::IsNotNull => return Ok(Literal::Nothing),
            Comparator::In | Comparator::NotIn => {
                if self.next() != Some(Token::LParen) {
                    return Err("expected '(' after IN".into());
                }
                let mut items = Vec::new();
                loop {
                    match self.next() {
                        Some(Token::Quoted(s, _)) => items.push(s),
                        other => {
                            return Err(format!(
                                "expected a quoted string in the list, got {other:?}"
                            ))
                        }
                    }
                    match self.next() {
                        Some(Token::Comma) => continue,
                        Some(Token::RParen) => break,
                        other => return Err(format!("expected ',' or ')', got {other:?}")),
                    }
                }
                return Ok(Literal::List(items));
            }
            _ => {}
        }
        match self.next() {
            Some(Token::Quoted(s, _)) => Ok(Literal::Str(s)),
            Some(Token::Word(w)) => Ok(Literal::Bare(w)),
            other => Err(format!("expected a value, got {other:?}")),
        }
    }
}

/// Parses a filter string into its clauses (none for an empty filter).
pub(crate) fn parse_filter(filter: &str) -> Result<Vec<Clause>> {
    let parse_error =
        |detail: String| invalid(format!("Error on parsing filter '{filter}': {detail}"));
    let tokens = lex(filter).map_err(parse_error)?;
    let mut p = Parser { tokens, pos: 0 };
    let mut clauses = Vec::new();
    while p.peek().is_some() {
        let (prefix, entity, key) = p.identifier()?.map_err(parse_error)?;
        let comparator = p.comparator().map_err(|e| {
            if e.starts_with("Invalid comparator") {
                invalid(e)
            } else {
                parse_error(e)
            }
        })?;
        let value = p.value(comparator).map_err(parse_error)?;
        clauses.push(Clause {
            prefix,
            entity,
            key,
            comparator,
            value,
        });
        match p.next() {
            None => break,
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("AND") => {
                if p.peek().is_none() {
                    return Err(parse_error("nothing after AND".into()));
                }
            }
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("OR") => {
                return Err(invalid(format!(
                    "Invalid clause(s) in filter string: '{w}'. Only 'AND' is supported \
                     between clauses."
                )))
            }
            Some(other) => {
                return Err(parse_error(format!(
                    "expected AND between clauses, got {other:?}"
                )))
            }
        }
    }
    Ok(clauses)
}

/// One `order_by` clause: `<identifier> [ASC|DESC]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OrderBy {
    /// What the identifier names.
    pub(crate) entity: Entity,
    /// The key.
    pub(crate) key: String,
    /// Ascending (the default) or descending.
    pub(crate) ascending: bool,
}

/// Parses one `order_by` clause.
pub(crate) fn parse_order_by(clause: &str) -> Result<OrderBy> {
    let error = |detail: String| {
        invalid(format!(
            "Invalid order_by clause '{clause}'. Could not be parsed: {detail}"
        ))
    };
    let tokens = lex(clause).map_err(error)?;
    let mut p = Parser { tokens, pos: 0 };
    let (_, entity, key) = p.identifier()?.map_err(error)?;
    let ascending = match p.next() {
        None => true,
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("ASC") => true,
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("DESC") => false,
        Some(other) => return Err(error(format!("expected ASC or DESC, got {other:?}"))),
    };
    if let Some(extra) = p.next() {
        return Err(error(format!("unexpected {extra:?} after the direction")));
    }
    Ok(OrderBy {
        entity,
        key,
        ascending,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mlflow_filters() {
        let c = parse_filter(
            "metrics.loss < 0.5 and params.`lr` = '0.01' AND tags.\"my tag\" LIKE \"a%\" \
             AND attributes.run_id IN ('a', 'b') AND tag.x IS NOT NULL AND status='RUNNING'",
        )
        .unwrap();
        assert_eq!(c.len(), 6);
        assert_eq!(c[0].entity, Entity::Metric);
        assert_eq!(c[0].comparator, Comparator::Lt);
        assert_eq!(c[0].value, Literal::Bare("0.5".into()));
        assert_eq!((c[1].entity, c[1].key.as_str()), (Entity::Param, "lr"));
        assert_eq!(c[2].key, "my tag");
        assert_eq!(c[2].value, Literal::Str("a%".into()));
        assert_eq!(c[3].value, Literal::List(vec!["a".into(), "b".into()]));
        assert_eq!(c[4].comparator, Comparator::IsNotNull);
        assert_eq!(
            (c[5].entity, c[5].key.as_str(), c[5].value.clone()),
            (Entity::Attribute, "status", Literal::Str("RUNNING".into()))
        );
        assert!(parse_filter("  ").unwrap().is_empty());
        let e = parse_filter("name = 'a' OR name = 'b'").unwrap_err();
        assert!(
            e.to_string()
                .contains("Invalid clause(s) in filter string: 'OR'"),
            "{e}"
        );
        for bad in [
            "name =",
            "name 'a'",
            "name = 'a' AND",
            "name = 'a",
            "foo.bar = 'x'",
            "x IN 'a'",
        ] {
            assert!(parse_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tests_compare_like_sql() {
        assert!(like("a%", "abc", false));
        assert!(!like("a%", "Abc", false));
        assert!(like("a%", "Abc", true));
        assert!(like("%alu%", "vaLue", true));
        assert!(like("a_c", "abc", false));
        assert!(!like("a_c", "abbc", false));
        assert!(like("%", "", false));
        assert!(like("%b%b", "abcbab", false));
        // Wildcards in the pattern stay wildcards against the same characters in the text.
        assert!(like("%a%", "a%b", false));
        assert!(like("a%", "a%", false));
        assert!(!like("a%c", "a%", false));
        let c = &parse_filter("tags.k != 'x'").unwrap()[0];
        let t = Test::string(c, KEY_VALUE_OPS).unwrap();
        assert!(t.on_str(Some("y")));
        assert!(!t.on_str(None), "a missing tag fails !=");
        let c = &parse_filter("metrics.m >= 2").unwrap()[0];
        let t = Test::number(c, NUMERIC_OPS).unwrap();
        assert!(t.on_num(Some(2.0)) && !t.on_num(Some(1.0)) && !t.on_num(None));
        let c = &parse_filter("metrics.m >= 'abc'").unwrap()[0];
        let e = Test::number(c, NUMERIC_OPS).unwrap_err();
        assert!(
            e.to_string()
                .contains("Expected numeric value type for metric"),
            "{e}"
        );
        let c = &parse_filter("params.p > 'a'").unwrap()[0];
        assert!(Test::string(c, KEY_VALUE_OPS).is_err());
    }

    #[test]
    fn order_by_clauses() {
        let o = parse_order_by("metrics.`my metric` DESC").unwrap();
        assert_eq!(
            (o.entity, o.key.as_str(), o.ascending),
            (Entity::Metric, "my metric", false)
        );
        let o = parse_order_by("start_time").unwrap();
        assert_eq!(
            (o.entity, o.key.as_str(), o.ascending),
            (Entity::Attribute, "start_time", true)
        );
        assert!(parse_order_by("name sideways").is_err());
    }
}
