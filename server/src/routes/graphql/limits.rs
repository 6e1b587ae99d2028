//! MLflow's limits on the shape of a GraphQL query, checked on the parsed document before it is
//! validated against the schema (so that a query too large to be worth validating is refused
//! cheaply, with MLflow's messages):
//!
//! - at most [`MAX_DEPTH`] levels of nested selection sets,
//! - at most [`MAX_SELECTIONS`] fields in all,
//! - at most `MLFLOW_SERVER_GRAPHQL_MAX_ROOT_FIELDS` (10) fields at the root of the operations,
//! - at most `MLFLOW_SERVER_GRAPHQL_MAX_ALIASES` (10) aliases in one selection set.
//!
//! Fragments count where they are spread (inline fragments and spreads merge into the
//! selection set around them, so aliases cannot be spread over sibling fragments to slip
//! through); a fragment spread inside itself is followed once.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, FragmentDefinition, Selection, SelectionSet,
};
use async_graphql::Name;

/// Deepest nesting of selection sets (the operation's own is level 1).
pub(crate) const MAX_DEPTH: usize = 10;
/// Most fields in one query, counted over every level.
pub(crate) const MAX_SELECTIONS: usize = 1000;

/// The environment variable (MLflow's) that sets the most root fields.
const MAX_ROOT_FIELDS_VAR: &str = "MLFLOW_SERVER_GRAPHQL_MAX_ROOT_FIELDS";
/// The environment variable (MLflow's) that sets the most aliases per selection set.
const MAX_ALIASES_VAR: &str = "MLFLOW_SERVER_GRAPHQL_MAX_ALIASES";

/// The limit set by environment variable `var`, or 10 (MLflow's default) when it is unset or
/// not a number. Read once.
fn env_limit(var: &'static str, cell: &'static OnceLock<usize>) -> usize {
    *cell.get_or_init(|| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(10)
    })
}

fn max_root_fields() -> usize {
    static CELL: OnceLock<usize> = OnceLock::new();
    env_limit(MAX_ROOT_FIELDS_VAR, &CELL)
}

fn max_aliases() -> usize {
    static CELL: OnceLock<usize> = OnceLock::new();
    env_limit(MAX_ALIASES_VAR, &CELL)
}

/// One selection set still to look at, with its level and the fragments spread on the way to it.
struct Pending<'a> {
    set: &'a SelectionSet,
    depth: usize,
    spread: HashSet<&'a str>,
}

/// Checks `doc` against the limits; the error is MLflow's message.
pub(crate) fn check(doc: &ExecutableDocument) -> Result<(), String> {
    let (root_fields, aliases) = scan(doc)?;
    let (root_limit, alias_limit) = (max_root_fields(), max_aliases());
    let (what, var, limit, got) = if root_fields > root_limit {
        ("root fields", MAX_ROOT_FIELDS_VAR, root_limit, root_fields)
    } else if aliases > alias_limit {
        ("aliases", MAX_ALIASES_VAR, alias_limit, aliases)
    } else {
        return Ok(());
    };
    Err(format!(
        "GraphQL queries should have at most {limit} {what}, got {got} {what}. To increase the \
         limit, set the {var} environment variable."
    ))
}

/// Walks every operation of `doc`: (fields at the root, most aliases in one selection set), or
/// the depth or selection limit's message.
fn scan(doc: &ExecutableDocument) -> Result<(usize, usize), String> {
    let fragments: HashMap<&str, &FragmentDefinition> = doc
        .fragments
        .iter()
        .map(|(name, f)| (name.as_str(), &f.node))
        .collect();
    let operations: Vec<&SelectionSet> = match &doc.operations {
        DocumentOperations::Single(op) => vec![&op.node.selection_set.node],
        DocumentOperations::Multiple(ops) => {
            ops.values().map(|op| &op.node.selection_set.node).collect()
        }
    };
    let (mut root_fields, mut most_aliases, mut selections) = (0, 0, 0);
    for set in operations {
        let mut stack = vec![Pending {
            set,
            depth: 1,
            spread: HashSet::new(),
        }];
        while let Some(p) = stack.pop() {
            if p.depth > MAX_DEPTH {
                return Err(format!("Query exceeds maximum depth of {MAX_DEPTH}"));
            }
            let (fields, aliases, spread) = flatten(p.set, &fragments, &p.spread);
            for field in fields {
                if p.depth == 1 {
                    root_fields += 1;
                }
                if !field.items.is_empty() {
                    stack.push(Pending {
                        set: field,
                        depth: p.depth + 1,
                        spread: spread.clone(),
                    });
                }
                selections += 1;
                if selections > MAX_SELECTIONS {
                    return Err(format!(
                        "Query exceeds maximum total selections of {MAX_SELECTIONS}"
                    ));
                }
            }
            most_aliases = most_aliases.max(aliases);
        }
    }
    Ok((root_fields, most_aliases))
}

/// The fields selected by `set` at its own level, with the fragments it spreads merged in: the
/// selection set of each field (empty for a leaf), how many of them carry an alias, and the
/// fragments spread so far (each followed once).
fn flatten<'a>(
    set: &'a SelectionSet,
    fragments: &HashMap<&'a str, &'a FragmentDefinition>,
    spread: &HashSet<&'a str>,
) -> (Vec<&'a SelectionSet>, usize, HashSet<&'a str>) {
    let mut spread = spread.clone();
    let mut fields = Vec::new();
    let mut aliases = 0;
    let mut todo: Vec<&'a Selection> = set.items.iter().map(|s| &s.node).collect();
    while let Some(selection) = todo.pop() {
        match selection {
            Selection::Field(f) => {
                if f.node.alias.is_some() {
                    aliases += 1;
                }
                fields.push(&f.node.selection_set.node);
            }
            Selection::InlineFragment(f) => {
                todo.extend(f.node.selection_set.node.items.iter().map(|s| &s.node));
            }
            Selection::FragmentSpread(s) => {
                let name: &Name = &s.node.fragment_name.node;
                if let Some((&key, def)) = fragments.get_key_value(name.as_str()) {
                    if spread.insert(key) {
                        todo.extend(def.selection_set.node.items.iter().map(|s| &s.node));
                    }
                }
            }
        }
    }
    (fields, aliases, spread)
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::parser::parse_query;

    fn check_str(q: &str) -> Result<(), String> {
        check(&parse_query(q).unwrap())
    }

    #[test]
    fn small_queries_pass() {
        check_str("{ a { b c } d }").unwrap();
        check_str("query Q { ...F } fragment F on Query { a { ...F } }").unwrap();
    }

    #[test]
    fn depth_is_limited() {
        let mut inner = "x".to_string();
        for _ in 0..9 {
            inner = format!("f {{ {inner} }}");
        }
        check_str(&format!("{{ {inner} }}")).unwrap();
        let e = check_str(&format!("{{ f {{ {inner} }} }}")).unwrap_err();
        assert_eq!(e, "Query exceeds maximum depth of 10");
    }

    #[test]
    fn selections_are_limited() {
        let fields: Vec<String> = (0..1001).map(|i| format!("f{i}")).collect();
        let e = check_str(&format!("{{ a {{ {} }} }}", fields.join(" "))).unwrap_err();
        assert_eq!(e, "Query exceeds maximum total selections of 1000");
    }

    #[test]
    fn root_fields_and_aliases_are_limited() {
        let roots: Vec<String> = (0..11).map(|i| format!("k{i}: test")).collect();
        let e = check_str(&format!("{{ {} }}", roots.join(" "))).unwrap_err();
        assert!(e.starts_with("GraphQL queries should have at most 10 root fields, got 11"));
        // Aliases spread over fragments count together.
        let q = "{ a { ...F ... on T { y1: y y2: y y3: y y4: y y5: y } } } \
                 fragment F on T { x1: x x2: x x3: x x4: x x5: x x6: x }";
        let e = check_str(q).unwrap_err();
        assert!(e.contains("at most 10 aliases, got 11 aliases"), "{e}");
    }
}
