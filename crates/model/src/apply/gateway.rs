//! Istio Gateways shape the listeners and routes of the gateway proxies
//! their selectors pick.

use shmesh_api::objects::Gateway;

use crate::store::Name;
use crate::{Dirty, Model};

impl Model {
    pub(crate) fn apply_gateway(&mut self, name: Name, new: Option<&Gateway>) -> Dirty {
        Dirty {
            gateways: self.gateways.replace(&name, new).is_some(),
            ..Dirty::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::test_objects::{changes, typed};

    const GATEWAY: &str = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: web, namespace: edge}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n";

    #[test]
    fn gateways_pick_proxies_and_bind_virtual_services() {
        let gw: Gateway = typed(GATEWAY);
        let mut model = Model::new();
        let name = ("edge".to_string(), "web".to_string());
        assert!(model.apply_gateway(name.clone(), Some(&gw)).gateways);
        assert!(model.apply_gateway(name.clone(), Some(&gw)).is_empty());
        let ingress = [("istio".to_string(), "ingressgateway".to_string())].into();
        assert_eq!(model.gateways_for("edge", &ingress).len(), 1);
        assert!(model.gateways_for("edge", &Default::default()).is_empty());
        assert!(model.selector_label_keys().contains("istio"));
        let vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: shop, namespace: shop}\nspec:\n  hosts: [shop.example.com]\n  gateways: [edge/web]\n  http: [{route: [{destination: {host: shop}}]}]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: local, namespace: edge}\nspec:\n  hosts: [local.example.com]\n  gateways: [web]\n  http: [{route: [{destination: {host: local}}]}]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: mesh, namespace: shop}\nspec:\n  hosts: [mesh.example.com]\n  http: [{route: [{destination: {host: mesh}}]}]\n";
        model.apply(changes(vs));
        let bound: Vec<&str> = model
            .virtual_services_for_gateway("edge", "web")
            .iter()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(bound, ["local", "shop"]);
        assert!(model.apply_gateway(name, None).gateways);
    }
}
