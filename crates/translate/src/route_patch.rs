//! Rebuilding only the virtual hosts a VirtualService change touched.
//!
//! Input: a view's previous snapshot and the host patterns of the
//! VirtualServices that changed. A VirtualService decides a virtual host's
//! routes, never its domains nor which virtual hosts exist, so every other
//! virtual host keeps the bytes already encoded: route configurations are
//! re-assembled around the rebuilt ones (a protobuf message is the
//! concatenation of its fields), and VHDS views patch only the virtual host
//! resources that changed. Output: the resources to upsert, byte-for-byte
//! what a full translation would encode.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use envoy_types::pb::envoy::config::route::v3::VirtualHost;
use prost::encoding::WireType;
use prost::Message;

use super::{route, ProxyView};
use shmesh_cache::protobuf::{bytes_field, next_field, put_field_head};
use shmesh_cache::{Resource, ResourceType, ResourceWriter, Snapshot};
use shmesh_model::{hosts, Model};

/// `RouteConfiguration.virtual_hosts`.
const VIRTUAL_HOSTS: u32 = 2;

/// Resources to upsert: route configurations, then VHDS virtual hosts.
type Upserts = (Vec<Arc<Resource>>, Vec<Arc<Resource>>);

/// Route configurations and VHDS virtual hosts that differ from `prev`
/// after the VirtualServices covering `patterns` changed; `None` if `prev`
/// holds something this cannot take apart (then translate in full).
pub fn changed_routes(
    model: &Model,
    view: &ProxyView,
    prev: &Snapshot,
    patterns: &BTreeSet<String>,
) -> Option<Upserts> {
    let configs = patched(prev, ResourceType::Route, |body| {
        patch_route_configuration(model, view, body, patterns)
    })?;
    let vhosts = patched(prev, ResourceType::VirtualHost, |body| {
        rebuild(model, view, body, patterns)
    })?;
    Some((configs, vhosts))
}

/// The resources of type `ty` in `prev` whose bodies `patch` changes, with
/// their new bodies (written together into one buffer); `None` if `patch`
/// cannot take one apart.
fn patched(
    prev: &Snapshot,
    ty: ResourceType,
    mut patch: impl FnMut(&Bytes) -> Option<Option<Bytes>>,
) -> Option<Vec<Arc<Resource>>> {
    let mut w = ResourceWriter::for_type(ty);
    for r in prev.get(ty).iter() {
        if let Some(body) = patch(&r.body)? {
            w.put_body(r.name.clone(), &body);
        }
    }
    Some(w.finish())
}

/// The route configuration with its affected virtual hosts rebuilt, every
/// other field copied as it was; `Some(None)` when nothing changed.
fn patch_route_configuration(
    model: &Model,
    view: &ProxyView,
    body: &Bytes,
    patterns: &BTreeSet<String>,
) -> Option<Option<Bytes>> {
    let mut out = BytesMut::with_capacity(body.len() + 64);
    let mut changed = false;
    let mut pos = 0;
    while pos < body.len() {
        let field = next_field(body, pos)?;
        if field.tag == VIRTUAL_HOSTS && field.wire_type == WireType::LengthDelimited {
            let vhost = body.slice(field.value.clone());
            if let Some(new) = rebuild(model, view, &vhost, patterns)? {
                put_field_head(VIRTUAL_HOSTS, new.len(), &mut out);
                out.put_slice(&new);
                changed = true;
                pos = field.end;
                continue;
            }
        }
        out.put_slice(&body[pos..field.end]);
        pos = field.end;
    }
    Some(changed.then(|| out.freeze()))
}

/// `VirtualHost.name`.
const VIRTUAL_HOST_NAME: u32 = 1;

/// The virtual host encoded again if a changed VirtualService covers its
/// service and its content differs; `Some(None)` if it stays as it is.
fn rebuild(
    model: &Model,
    view: &ProxyView,
    body: &Bytes,
    patterns: &BTreeSet<String>,
) -> Option<Option<Bytes>> {
    // Read in place: most virtual hosts stay as they are.
    let name = std::str::from_utf8(bytes_field(body, VIRTUAL_HOST_NAME)?).ok()?;
    // `host:port`, or `<route configuration>/host:port` over VHDS; the
    // catch-all `allow_any` belongs to no service.
    let own = name.rsplit_once('/').map_or(name, |(_, n)| n);
    let Some((host, port)) = own.rsplit_once(':') else {
        return Some(None);
    };
    if !patterns.iter().any(|p| hosts::matches(p, host)) {
        return Some(None);
    }
    let port: u16 = port.parse().ok()?;
    let svc = model.service(host)?;
    let old = VirtualHost::decode(body.clone()).ok()?;
    let mut new = route::virtual_host(model, view, svc, port, old.domains);
    new.name = old.name;
    let encoded = new.encode_to_vec();
    Some((encoded != body[..]).then(|| Bytes::from(encoded)))
}
