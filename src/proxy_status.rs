//! `shmesh proxy-status [PROXY]`: whether each proxy connected to a running
//! shmesh has applied what it was sent, per type, in the table istioctl's
//! `proxy-status` prints (NAME, CLUSTER, CDS, LDS, EDS, RDS, ISTIOD,
//! VERSION). Read from the admin server's `/debug/syncz`.
//!
//! A type is SYNCED (the proxy applied the latest response, or reported
//! holding the current version when it connected), STALE (sent and not yet
//! applied, or rejected), NOT SENT (asked for, nothing to send) or IGNORED
//! (never asked for). VHDS and SDS columns appear only when some listed
//! proxy asked for those types; CLUSTER only when some proxy names its
//! cluster (Istio's agent sets `CLUSTER_ID`).

use serde::Serialize;
use shmesh_cache::ResourceType;

use crate::admin::syncz::{proxy_name, SyncStatus};
use crate::config::{Output, ProxyStatusArgs};
use crate::table::Table;

/// What istioctl shows for a type the proxy never asked for.
const IGNORED: &str = "IGNORED";

/// Columns in istioctl's order, then the types only some proxies use.
const COLUMNS: [ResourceType; 6] = [
    ResourceType::Cluster,
    ResourceType::Listener,
    ResourceType::Endpoint,
    ResourceType::Route,
    ResourceType::VirtualHost,
    ResourceType::Secret,
];

/// One proxy's line, as `-o json` prints it.
#[derive(Debug, Serialize)]
struct Row {
    name: String,
    node_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    cluster: String,
    /// Per type (`cds`, `lds`, ...): its state.
    #[serde(flatten)]
    types: std::collections::BTreeMap<&'static str, String>,
    istiod: String,
    version: String,
}

/// Runs the command; exit code 1 when the named proxy is not connected.
pub async fn run(args: ProxyStatusArgs) -> anyhow::Result<i32> {
    let body = crate::admin_client::get(args.admin_addr, "/debug/syncz").await?;
    let mut statuses: Vec<SyncStatus> = serde_json::from_slice(&body)
        .map_err(|e| anyhow::anyhow!("/debug/syncz at {}: {e}", args.admin_addr))?;
    if let Some(proxy) = &args.proxy {
        statuses.retain(|s| &s.proxy == proxy || proxy_name(&s.proxy) == proxy);
        if statuses.is_empty() {
            eprintln!(
                "no proxy {proxy:?} is connected to the shmesh at {}",
                args.admin_addr
            );
            return Ok(1);
        }
    }
    let rows = rows(&statuses);
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Output::Table => print!("{}", table(&statuses, &rows)),
    }
    Ok(0)
}

fn rows(statuses: &[SyncStatus]) -> Vec<Row> {
    let mut rows: Vec<Row> = statuses
        .iter()
        .map(|s| Row {
            name: proxy_name(&s.proxy).to_string(),
            node_id: s.proxy.clone(),
            cluster: s.cluster_id.clone(),
            types: COLUMNS
                .iter()
                .map(|ty| {
                    let state = s
                        .resources
                        .get(ty.type_url())
                        .map_or(IGNORED.to_string(), |r| r.status.clone());
                    (ty.short(), state)
                })
                .collect(),
            istiod: s.istiod.clone(),
            version: s.proxy_version.clone(),
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name).then(a.node_id.cmp(&b.node_id)));
    rows
}

/// istioctl's table; the optional columns only when some proxy has them.
fn table(statuses: &[SyncStatus], rows: &[Row]) -> String {
    let with_cluster = rows.iter().any(|r| !r.cluster.is_empty());
    let used = |ty: ResourceType| {
        statuses
            .iter()
            .any(|s| s.resources.contains_key(ty.type_url()))
    };
    let columns: Vec<ResourceType> = COLUMNS
        .into_iter()
        .filter(|ty| !matches!(ty, ResourceType::VirtualHost | ResourceType::Secret) || used(*ty))
        .collect();
    let headers: Vec<String> = columns.iter().map(|ty| ty.short().to_uppercase()).collect();
    let mut header = vec!["NAME"];
    if with_cluster {
        header.push("CLUSTER");
    }
    header.extend(headers.iter().map(String::as_str));
    header.extend(["ISTIOD", "VERSION"]);
    let mut table = Table::new(5, &header);
    for row in rows {
        let mut cells = vec![row.name.clone()];
        if with_cluster {
            cells.push(row.cluster.clone());
        }
        cells.extend(columns.iter().map(|ty| row.types[ty.short()].clone()));
        cells.push(row.istiod.clone());
        cells.push(row.version.clone());
        table.row(cells);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::syncz::ResourceStatus;

    fn status(proxy: &str, types: &[(ResourceType, &str)]) -> SyncStatus {
        SyncStatus {
            proxy: proxy.to_string(),
            proxy_version: "1.40.0".to_string(),
            istiod: "shmesh-0".to_string(),
            resources: types
                .iter()
                .map(|(ty, state)| {
                    (
                        ty.type_url().to_string(),
                        ResourceStatus {
                            status: state.to_string(),
                            ..Default::default()
                        },
                    )
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn table_has_istioctls_columns_and_only_the_types_in_use() {
        let statuses = vec![
            status(
                "sidecar~10.0.0.2~b.default~default.svc.cluster.local",
                &[
                    (ResourceType::Cluster, "SYNCED"),
                    (ResourceType::Listener, "STALE"),
                ],
            ),
            status("a", &[(ResourceType::Cluster, "NOT SENT")]),
        ];
        let out = table(&statuses, &rows(&statuses));
        let lines: Vec<Vec<&str>> = out
            .lines()
            .map(|l| {
                l.split("  ")
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .collect()
            })
            .collect();
        assert_eq!(
            lines[0],
            vec!["NAME", "CDS", "LDS", "EDS", "RDS", "ISTIOD", "VERSION"]
        );
        assert_eq!(
            lines[1],
            vec!["a", "NOT SENT", "IGNORED", "IGNORED", "IGNORED", "shmesh-0", "1.40.0"]
        );
        assert_eq!(
            lines[2],
            vec![
                "b.default",
                "SYNCED",
                "STALE",
                "IGNORED",
                "IGNORED",
                "shmesh-0",
                "1.40.0"
            ]
        );
    }
}
