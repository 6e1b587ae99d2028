//! SQL errors a person can act on: a syntax error shows the query's line with a caret under
//! the place (DataFusion's parser reports `at Line: L, Column: C`), and an unknown table lists
//! the tables there are, closest first. Other messages (an unknown column already lists the
//! valid ones) go through as DataFusion words them.

use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;

/// A better message for `e`, raised by `sql`, when there is one; `tables` are the names a
/// query can use.
pub(super) fn explain(e: &DataFusionError, sql: &str, tables: &[String]) -> Option<String> {
    match e {
        DataFusionError::SQL(p, _) => Some(syntax(p, sql)),
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            explain(inner, sql, tables)
        }
        DataFusionError::Plan(m) => unknown_table(m, tables),
        _ => None,
    }
}

/// `msg` without its ` at Line: L, Column: C` suffix, and (L, C) when it has one.
fn location(msg: &str) -> (&str, Option<(usize, usize)>) {
    let Some(at) = msg.rfind(" at Line: ") else {
        return (msg, None);
    };
    let tail = &msg[at + " at Line: ".len()..];
    let parsed = tail.split_once(", Column: ").and_then(|(l, c)| {
        let c = c.trim_end_matches(|ch: char| !ch.is_ascii_digit());
        Some((l.trim().parse().ok()?, c.parse().ok()?))
    });
    match parsed {
        Some(lc) => (&msg[..at], Some(lc)),
        None => (msg, None),
    }
}

/// A syntax error with the line of `sql` it is on and a caret under its column (at the end of
/// the query when the parser ran out of it).
fn syntax(p: &ParserError, sql: &str) -> String {
    let msg = match p {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m.as_str(),
        ParserError::RecursionLimitExceeded => "the query nests too deeply",
    };
    let (what, at) = location(msg);
    let lines: Vec<&str> = sql.lines().collect();
    let (line, column) = at.unwrap_or_else(|| {
        let last = lines.len().max(1);
        let len = lines.last().map_or(0, |l| l.chars().count());
        (last, len + 1)
    });
    let Some(text) = lines.get(line.saturating_sub(1)) else {
        return format!("SQL syntax error: {what}");
    };
    let pad: String = text
        .chars()
        .take(column.saturating_sub(1))
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    format!("SQL syntax error at line {line}, column {column}: {what}\n  {text}\n  {pad}^")
}

/// "table 'datafusion.public.x' not found" as: no table `x`, and the tables there are.
fn unknown_table(msg: &str, tables: &[String]) -> Option<String> {
    let start = msg.find("table '")? + "table '".len();
    let end = start + msg[start..].find("' not found")?;
    let full = &msg[start..end];
    let name = full.rsplit('.').next().unwrap_or(full);
    // Closest first: names that hold the given one (or are held in it), then by Jaro-Winkler
    // similarity, which favours a common beginning.
    let wanted = name.to_lowercase();
    let mut known: Vec<&String> = tables.iter().collect();
    known.sort_by(|a, b| {
        let rank = |t: &str| {
            let related = t.contains(&wanted) || wanted.contains(t);
            (!related, -strsim::jaro_winkler(&wanted, t))
        };
        rank(a)
            .partial_cmp(&rank(b))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.cmp(b))
    });
    let list: Vec<&str> = known.iter().map(|t| t.as_str()).collect();
    Some(format!(
        "no table '{name}'; the tables are (closest first): {}",
        list.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_error(sql: &str) -> DataFusionError {
        datafusion::sql::parser::DFParserBuilder::new(sql)
            .build()
            .and_then(|mut p| p.parse_statements())
            .unwrap_err()
    }

    #[test]
    fn syntax_errors_point_at_the_place() {
        let sql = "SELECT key\nFROM metrics WHER step > 1";
        let e = parse_error(sql);
        let got = explain(&e, sql, &[]).unwrap();
        assert_eq!(
            got,
            "SQL syntax error at line 2, column 19: Expected: end of statement, found: step\n  \
             FROM metrics WHER step > 1\n                    ^"
        );
        let sql = "SELEC 1";
        let got = explain(&parse_error(sql), sql, &[]).unwrap();
        assert!(got.starts_with("SQL syntax error at line 1, column 1: Expected: an SQL statement, found: SELEC\n  SELEC 1\n  ^"), "{got}");
        // Ran out of query: the caret after its end.
        let sql = "SELECT key FROM metrics WHERE";
        let got = explain(&parse_error(sql), sql, &[]).unwrap();
        assert!(
            got.ends_with(&format!("\n  {sql}\n  {}^", " ".repeat(sql.len()))),
            "{got}"
        );
    }

    #[test]
    fn unknown_tables_list_the_closest_first() {
        let tables: Vec<String> = ["metrics", "runs", "params", "tags", "metric_series"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let e = DataFusionError::Plan("table 'datafusion.public.metric' not found".into());
        let got = explain(&e, "", &tables).unwrap();
        assert!(
            got.starts_with(
                "no table 'metric'; the tables are (closest first): metrics, metric_series, "
            ),
            "{got}"
        );
        for t in &tables {
            assert!(got.contains(t.as_str()), "{got}");
        }
        let e = DataFusionError::Plan("table 'datafusion.public.rnus' not found".into());
        let got = explain(&e, "", &tables).unwrap();
        assert!(got.contains("(closest first): runs, "), "{got}");
        assert_eq!(
            explain(&DataFusionError::Plan("something else".into()), "", &tables),
            None
        );
    }
}
