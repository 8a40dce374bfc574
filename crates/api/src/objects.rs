//! Every kind's schema in one place, for code that reads several kinds
//! (`use shmesh_api::objects::*`). Each kind lives in its own module, with its
//! validation and tests.

pub use crate::authorization_policy::*;
pub use crate::destination_rule::*;
pub use crate::endpoint_slice::*;
pub use crate::gateway::*;
pub use crate::gateway_api::*;
pub use crate::grpc_route::*;
pub use crate::l4_route::*;
pub use crate::meta::*;
pub use crate::namespace::*;
pub use crate::peer_authentication::*;
pub use crate::pod::*;
pub use crate::reference_grant::*;
pub use crate::request_authentication::*;
pub use crate::secret::*;
pub use crate::service::*;
pub use crate::service_entry::*;
pub use crate::sidecar::*;
pub use crate::virtual_service::*;
pub use crate::workload_entry::*;
