//! Label selectors as NetworkPolicies use them (`podSelector`, `namespaceSelector`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// A set of labels (a pod's or a namespace's).
pub(crate) type Labels = BTreeMap<String, String>;

/// Whether `selector` selects an object with `labels`: every `matchLabels` pair is present and
/// every `matchExpressions` requirement holds (`In`, `NotIn`, `Exists`, `DoesNotExist`, with
/// Kubernetes' meaning: `NotIn` holds for an object without the key). An empty selector selects
/// everything; a requirement with an unknown operator selects nothing (the API server refuses
/// those anyway).
pub(crate) fn selects(selector: &LabelSelector, labels: &Labels) -> bool {
    let labels_hold = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value));
    let expressions_hold = selector.match_expressions.iter().flatten().all(|requirement| {
        let value = labels.get(&requirement.key);
        let values = requirement.values.as_deref().unwrap_or_default();
        match requirement.operator.as_str() {
            "In" => value.is_some_and(|value| values.contains(value)),
            "NotIn" => value.is_none_or(|value| !values.contains(value)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_hold && expressions_hold
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn expression(key: &str, operator: &str, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.to_owned(),
                operator: operator.to_owned(),
                values: (!values.is_empty())
                    .then(|| values.iter().map(|value| (*value).to_owned()).collect()),
            }]),
            match_labels: None,
        }
    }

    #[test]
    fn empty_selectors_select_everything_and_match_labels_need_every_pair() {
        let web = labels(&[("app", "web"), ("tier", "front")]);
        assert!(selects(&LabelSelector::default(), &web));
        assert!(selects(&LabelSelector::default(), &Labels::new()));
        let selector = LabelSelector {
            match_labels: Some(labels(&[("app", "web"), ("tier", "front")])),
            match_expressions: None,
        };
        assert!(selects(&selector, &web));
        assert!(!selects(&selector, &labels(&[("app", "web")])));
        assert!(!selects(&selector, &labels(&[("app", "web"), ("tier", "back")])));
    }

    #[test]
    fn match_expressions_follow_kubernetes() {
        let web = labels(&[("app", "web")]);
        let bare = Labels::new();
        let cases = [
            (expression("app", "In", &["web", "api"]), true, false),
            (expression("app", "In", &["api"]), false, false),
            (expression("app", "NotIn", &["api"]), true, true),
            (expression("app", "NotIn", &["web"]), false, true),
            (expression("app", "Exists", &[]), true, false),
            (expression("app", "DoesNotExist", &[]), false, true),
            (expression("app", "Gt", &["1"]), false, false),
        ];
        for (selector, on_web, on_bare) in cases {
            assert_eq!(selects(&selector, &web), on_web, "{selector:?} on {web:?}");
            assert_eq!(selects(&selector, &bare), on_bare, "{selector:?} on no labels");
        }
        let both = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            ..expression("tier", "DoesNotExist", &[])
        };
        assert!(selects(&both, &web));
        assert!(!selects(&both, &labels(&[("app", "web"), ("tier", "x")])));
    }
}
