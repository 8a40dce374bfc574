//! Prometheus scrapes on the test's side, parsed by Prometheus' own Python
//! client (`prometheus_client.parser`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::grpc::run_bounded;

/// A series' labels, without its name.
pub type Labels = BTreeMap<String, String>;

/// The samples of a scrape, by series name, as the parser read them.
pub type Samples = BTreeMap<String, Vec<(Labels, f64)>>;

/// Parses Prometheus text with `prometheus_client.parser` (in a `python3`
/// run in `dir`) and returns the samples by name, counters named as
/// OpenMetrics names them (`_total`), as the client reports them.
pub fn parse(dir: &Path, text: &str) -> Samples {
    run_parser(dir, text, false)
}

/// Like [`parse`], but every sample keeps the name it was written with, as
/// Prometheus stores the text format's samples and as queries name them
/// (`envoy_cluster_upstream_rq`, not `envoy_cluster_upstream_rq_total`,
/// which is another of Envoy's counters). The client renames counters, so
/// they are read as untyped.
pub fn parse_as_written(dir: &Path, text: &str) -> Samples {
    run_parser(dir, text, true)
}

fn run_parser(dir: &Path, text: &str, as_written: bool) -> Samples {
    let file = dir.join("scrape.txt");
    std::fs::write(&file, text).expect("write scrape");
    let script = "import json, re, sys\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        text = open(sys.argv[1]).read()\n\
        if sys.argv[2] == 'as-written':\n\
        \x20   text = re.sub(r'(?m)^(# TYPE \\S+) counter$', r'\\1 untyped', text)\n\
        out = {}\n\
        for family in text_string_to_metric_families(text):\n\
        \x20   for s in family.samples:\n\
        \x20       out.setdefault(s.name, []).append([s.labels, s.value])\n\
        print(json.dumps(out))\n";
    let mut cmd = Command::new("python3");
    cmd.args(["-c", script]).arg(&file).arg(if as_written {
        "as-written"
    } else {
        "openmetrics"
    });
    let run = run_bounded(cmd, dir, "parse", Duration::from_secs(60));
    assert!(
        run.ok(),
        "the Prometheus parser refused the scrape: {}",
        run.describe()
    );
    serde_json::from_str(run.out.stdout().trim()).expect("parser output")
}
