//! The `@component(name: "...")` directive that MLflow's web UI puts on its operations
//! (`query GetRun(...) @component(name: "MLflow.ExperimentRunTracking")`): declared so that
//! such queries validate, and otherwise ignored, as MLflow ignores it.

use std::borrow::Cow;

use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::Directive;
use async_graphql::registry::{
    __DirectiveLocation, Deprecation, MetaDirective, MetaInputValue, Registry,
};
use async_graphql::{ContextDirective, CustomDirective, CustomDirectiveFactory, ServerResult};

/// The `component` directive, allowed on queries and mutations.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Component;

/// What `@component` does when executed: nothing (it is only allowed on operations, where
/// async-graphql does not run directives, so this is never called).
struct Ignored;

impl CustomDirective for Ignored {}

impl CustomDirectiveFactory for Component {
    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed("component")
    }

    fn register(&self, registry: &mut Registry) {
        let mut args = IndexMap::new();
        args.insert(
            "name".to_string(),
            MetaInputValue {
                name: "name".to_string(),
                description: Some("The UI component that sends the operation.".to_string()),
                ty: "String!".to_string(),
                deprecation: Deprecation::NoDeprecated,
                default_value: None,
                visible: None,
                inaccessible: false,
                tags: Vec::new(),
                is_secret: false,
                directive_invocations: Vec::new(),
            },
        );
        registry.add_directive(MetaDirective {
            name: "component".to_string(),
            description: Some("Component identifier, kept for compatibility.".to_string()),
            locations: vec![__DirectiveLocation::QUERY, __DirectiveLocation::MUTATION],
            args,
            is_repeatable: false,
            visible: None,
            composable: None,
        });
    }

    fn create(
        &self,
        _ctx: &ContextDirective<'_>,
        _directive: &Directive,
    ) -> ServerResult<Box<dyn CustomDirective>> {
        Ok(Box::new(Ignored))
    }
}
