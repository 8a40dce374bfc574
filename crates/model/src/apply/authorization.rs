//! AuthorizationPolicies and RequestAuthentications decide what the sidecars
//! they cover let in: they change inbound listeners only.

use shmesh_api::objects::{AuthorizationPolicy, RequestAuthentication};

use crate::store::Name;
use crate::{Dirty, Model};

impl Model {
    pub(crate) fn apply_authorization_policy(
        &mut self,
        name: Name,
        new: Option<&AuthorizationPolicy>,
    ) -> Dirty {
        Dirty {
            authorization: self.authorization_policies.replace(&name, new).is_some(),
            ..Dirty::default()
        }
    }

    pub(crate) fn apply_request_authentication(
        &mut self,
        name: Name,
        new: Option<&RequestAuthentication>,
    ) -> Dirty {
        Dirty {
            authorization: self.request_authentications.replace(&name, new).is_some(),
            ..Dirty::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::test_objects::typed;

    #[test]
    fn policies_touch_authorization_only_when_they_change() {
        let ap: AuthorizationPolicy = typed("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny, namespace: shop}\nspec: {action: DENY}\n");
        let ra: RequestAuthentication = typed("apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: jwt, namespace: shop}\nspec: {jwtRules: [{issuer: a, jwks: '{\"keys\": []}'}]}\n");
        let mut model = Model::new();
        let name = ("shop".to_string(), "p".to_string());
        let added = model.apply_authorization_policy(name.clone(), Some(&ap));
        assert!(added.authorization && !added.security && added.config.is_empty());
        assert!(model
            .apply_authorization_policy(name.clone(), Some(&ap))
            .is_empty());
        assert!(
            model
                .apply_request_authentication(name.clone(), Some(&ra))
                .authorization
        );
        assert!(
            model
                .apply_authorization_policy(name.clone(), None)
                .authorization
        );
        assert!(
            model
                .apply_request_authentication(name.clone(), None)
                .authorization
        );
        assert!(model.apply_request_authentication(name, None).is_empty());
    }
}
