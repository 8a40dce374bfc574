//! Secrets hold the certificates DestinationRules name by `credentialName`:
//! they change the SDS secrets of the proxies in their namespace, not the
//! translated configuration.

use shmesh_api::objects::Secret;

use crate::store::Name;
use crate::{Dirty, Model};

impl Model {
    pub(crate) fn apply_secret(&mut self, name: Name, new: Option<&Secret>) -> Dirty {
        let mut dirty = Dirty::default();
        if self.secrets.replace(&name, new).is_some() {
            dirty.secrets.insert(name.0);
        }
        dirty
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::test_objects::typed;

    #[test]
    fn a_secret_touches_its_namespace_only_when_it_changes() {
        let secret: Secret = typed("apiVersion: v1\nkind: Secret\nmetadata: {name: client, namespace: shop}\nstringData: {cert: C, key: K}\n");
        let mut model = Model::new();
        let name = ("shop".to_string(), "client".to_string());
        let added = model.apply_secret(name.clone(), Some(&secret));
        assert_eq!(added.secrets, ["shop".to_string()].into());
        assert!(added.config.is_empty() && !added.security);
        assert!(model.apply_secret(name.clone(), Some(&secret)).is_empty());
        assert!(model.secret("shop", "client").is_some());
        assert!(!model.apply_secret(name.clone(), None).is_empty());
        assert!(model.secret("shop", "client").is_none());
        assert!(model.apply_secret(name, None).is_empty());
    }
}
