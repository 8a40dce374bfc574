//! A PeerAuthentication decides what the sidecars it covers accept (mutual
//! TLS, plaintext or both) and, through Istio's auto mTLS, what their
//! callers send them.

use shmesh_api::peer_authentication::PeerAuthentication;

use crate::store::Name;
use crate::{Dirty, Model};

impl Model {
    /// Touches the security of every view: inbound listeners, and the
    /// TLS clusters of callers.
    pub(crate) fn apply_peer_authentication(
        &mut self,
        name: Name,
        new: Option<&PeerAuthentication>,
    ) -> Dirty {
        Dirty {
            security: self.peer_authentications.replace(&name, new).is_some(),
            ..Dirty::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::test_objects::typed;

    fn pa(mode: &str) -> PeerAuthentication {
        let yaml = format!("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: default, namespace: shop}}\nspec:\n  mtls: {{mode: {mode}}}\n");
        typed(&yaml)
    }

    #[test]
    fn reports_security_once_per_real_change() {
        let mut model = Model::new();
        let name = ("shop".to_string(), "default".to_string());
        let added = model.apply_peer_authentication(name.clone(), Some(&pa("STRICT")));
        assert!(added.security);
        assert!(added.config.is_empty() && !added.scope && !added.routes);
        assert!(model
            .apply_peer_authentication(name.clone(), Some(&pa("STRICT")))
            .is_empty());
        assert!(
            model
                .apply_peer_authentication(name.clone(), Some(&pa("DISABLE")))
                .security
        );
        assert!(model.apply_peer_authentication(name.clone(), None).security);
        assert!(model.apply_peer_authentication(name, None).is_empty());
    }
}
