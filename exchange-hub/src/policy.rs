//! The routing policy: which department may send to which (`[routing]` in `hub.toml`).
//!
//! Without rules everyone may send to everyone in the directory. A sender that one or more
//! rules name (`from`) may send only to the recipients those rules' `to` lists match; a sender
//! that no rule names gets `default` (`allow` or `deny`). The hub applies it at `Submit`, after
//! the signature, sender and directory checks and before anything is stored, and refuses a
//! violation with `PERMISSION_DENIED` naming every recipient the sender may not address.

use exchange_core::{
    config::{RoutingDefault, RoutingSection},
    document::Recipient,
    error::ServiceError,
    ids::DeptId,
};

/// Whether `sender` may address `recipient` under `routing`.
pub(crate) fn allowed(routing: &RoutingSection, sender: &DeptId, recipient: &DeptId) -> bool {
    let mut named = false;
    for rule in routing.rules.iter().filter(|r| r.from.matches(sender)) {
        named = true;
        if rule.to.iter().any(|p| p.matches(recipient)) {
            return true;
        }
    }
    !named && routing.default == RoutingDefault::Allow
}

/// Refuses a document from `sender` to `recipients` if the policy forbids any of them.
pub(crate) fn check(
    routing: &RoutingSection,
    sender: &DeptId,
    recipients: &[Recipient],
) -> Result<(), ServiceError> {
    let refused: Vec<&str> = recipients
        .iter()
        .filter(|r| r.addr.exchange.is_none() && !allowed(routing, sender, &r.addr.dept))
        .map(|r| r.addr.dept.as_str())
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    Err(ServiceError::denied(format!(
        "metadata.to_depts: the routing policy ([routing] in hub.toml) does not allow {sender} \
         to send to {}",
        refused.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use exchange_core::document::RecipientRole;

    use super::*;

    fn routing(text: &str) -> RoutingSection {
        toml::from_str(text).unwrap()
    }

    fn to(ids: &[&str]) -> Vec<Recipient> {
        ids.iter()
            .map(|d| Recipient {
                addr: d.parse().unwrap(),
                role: RecipientRole::Main,
            })
            .collect()
    }

    #[test]
    fn rules_restrict_the_senders_they_name_and_refusals_name_the_recipients() {
        let open = RoutingSection::default();
        let county: DeptId = "county-east".parse().unwrap();
        assert!(check(&open, &county, &to(&["city", "county-west"])).is_ok());

        let r = routing(
            "[[rules]]\nfrom = \"county-*\"\nto = [\"city\", \"town-*\"]\n\
             [[rules]]\nfrom = \"county-east\"\nto = [\"county-west\"]\n",
        );
        assert!(check(&r, &county, &to(&["city", "town-1", "county-west"])).is_ok());
        let west: DeptId = "county-west".parse().unwrap();
        let err = check(&r, &west, &to(&["city", "county-east", "school"])).unwrap_err();
        assert_eq!(err.code, exchange_core::error::ErrorCode::PermissionDenied);
        assert!(
            err.message.ends_with("to send to county-east, school"),
            "{}",
            err.message
        );
        let city: DeptId = "city".parse().unwrap();
        assert!(
            check(&r, &city, &to(&["school"])).is_ok(),
            "unnamed senders: default allow"
        );

        let strict = routing("default = \"deny\"\n[[rules]]\nfrom = \"city\"\nto = [\"*\"]\n");
        assert!(check(&strict, &city, &to(&["school"])).is_ok());
        assert!(check(&strict, &county, &to(&["city"])).is_err());
    }
}
