//! The PromQL that canary templates run, evaluated over two scrapes as
//! Prometheus would evaluate it over the samples of a window.
//!
//! [`Window`] holds a scrape taken before some traffic and one taken
//! after; a range vector selector (`x[1m]`) then stands for the samples of
//! each series in that window, so `increase()` is the difference between
//! the two (a series missing from the first scrape started at 0) and
//! `rate()` that difference over the range. Only what the templates use is
//! implemented: `sum` (with `by`), `rate`, `increase`, `histogram_quantile`,
//! arithmetic between vectors with equal labels and scalars; anything else
//! panics, naming what it met, so a template that grows past this fails
//! its test instead of being half evaluated.

use std::collections::BTreeMap;

use promql_parser::label::Matchers;
use promql_parser::parser::token::{T_ADD, T_DIV, T_MUL, T_SUB, T_SUM};
use promql_parser::parser::{Expr, LabelModifier, VectorSelector};

use crate::common::prometheus::{Labels, Samples};

/// What an expression evaluates to.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(f64),
    Vector(Vec<(Labels, f64)>),
}

impl Value {
    /// The one sample of a vector (a query's answer, as a canary tool reads
    /// `result[0]`); `None` for an empty vector.
    pub fn single(&self) -> Option<f64> {
        match self {
            Value::Scalar(v) => Some(*v),
            Value::Vector(samples) => {
                assert!(samples.len() <= 1, "more than one sample: {samples:?}");
                samples.first().map(|(_, v)| *v)
            }
        }
    }
}

/// Two scrapes of the same targets, before and after what is measured.
pub struct Window<'a> {
    pub before: &'a Samples,
    pub after: &'a Samples,
}

impl Window<'_> {
    /// Parses `query` with a PromQL parser and evaluates it over the window.
    pub fn query(&self, query: &str) -> Value {
        let expr = promql_parser::parser::parse(query)
            .unwrap_or_else(|e| panic!("not PromQL: {e}\n{query}"));
        self.eval(&expr)
    }

    fn eval(&self, expr: &Expr) -> Value {
        match expr {
            Expr::NumberLiteral(n) => Value::Scalar(n.val),
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::Aggregate(a) if a.op.id() == T_SUM => {
                let Value::Vector(samples) = self.eval(&a.expr) else {
                    panic!("sum of a scalar: {expr}");
                };
                let by: Vec<String> = match &a.modifier {
                    None => Vec::new(),
                    Some(LabelModifier::Include(l)) => l.labels.clone(),
                    Some(other) => panic!("unsupported grouping {other:?}"),
                };
                let mut groups: BTreeMap<Labels, f64> = BTreeMap::new();
                for (labels, v) in samples {
                    let key = labels.into_iter().filter(|(k, _)| by.contains(k)).collect();
                    *groups.entry(key).or_default() += v;
                }
                Value::Vector(groups.into_iter().collect())
            }
            Expr::Call(call) => self.call(call.func.name, &call.args.args, expr),
            Expr::Binary(b) => {
                let op = b.op.id();
                let apply = |l: f64, r: f64| match op {
                    T_ADD => l + r,
                    T_SUB => l - r,
                    T_MUL => l * r,
                    T_DIV => l / r,
                    _ => panic!("unsupported operator in {expr}"),
                };
                match (self.eval(&b.lhs), self.eval(&b.rhs)) {
                    (Value::Scalar(l), Value::Scalar(r)) => Value::Scalar(apply(l, r)),
                    (Value::Vector(l), Value::Scalar(r)) => {
                        Value::Vector(l.into_iter().map(|(k, v)| (k, apply(v, r))).collect())
                    }
                    (Value::Scalar(l), Value::Vector(r)) => {
                        Value::Vector(r.into_iter().map(|(k, v)| (k, apply(l, v))).collect())
                    }
                    // One-to-one matching on all labels.
                    (Value::Vector(l), Value::Vector(r)) => Value::Vector(
                        l.into_iter()
                            .filter_map(|(k, lv)| {
                                let rv = r.iter().find(|(rk, _)| *rk == k)?.1;
                                Some((k, apply(lv, rv)))
                            })
                            .collect(),
                    ),
                }
            }
            other => panic!("unsupported expression {other}"),
        }
    }

    fn call(&self, name: &str, args: &[Box<Expr>], expr: &Expr) -> Value {
        match (name, args) {
            ("rate" | "increase", [arg]) => {
                let Expr::MatrixSelector(m) = &**arg else {
                    panic!("{name} of something else than a range: {expr}");
                };
                let per = if name == "rate" {
                    m.range.as_secs_f64()
                } else {
                    1.0
                };
                let increases = self
                    .select(&m.vs, self.after)
                    .into_iter()
                    .map(|(labels, after)| {
                        let before = self
                            .select(&m.vs, self.before)
                            .into_iter()
                            .find(|(l, _)| *l == labels)
                            .map_or(0.0, |(_, v)| v);
                        (labels, (after - before) / per)
                    })
                    .collect();
                Value::Vector(increases)
            }
            ("histogram_quantile", [q, buckets]) => {
                let Value::Scalar(q) = self.eval(q) else {
                    panic!("the quantile is not a number: {expr}");
                };
                let Value::Vector(samples) = self.eval(buckets) else {
                    panic!("histogram_quantile of a scalar: {expr}");
                };
                let mut histograms: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
                for (mut labels, count) in samples {
                    let le = labels.remove("le").expect("a bucket without `le`");
                    let le: f64 = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().expect("`le` is a number")
                    };
                    histograms.entry(labels).or_default().push((le, count));
                }
                Value::Vector(
                    histograms
                        .into_iter()
                        .map(|(labels, buckets)| (labels, bucket_quantile(q, buckets)))
                        .collect(),
                )
            }
            _ => panic!("unsupported function in {expr}"),
        }
    }

    /// The series of `samples` a selector picks, without their names. A
    /// matcher on a label a series lacks sees the empty string, as
    /// Prometheus' do.
    fn select(&self, vs: &VectorSelector, samples: &Samples) -> Vec<(Labels, f64)> {
        let name = vs.name.as_deref().expect("a selector with a metric name");
        let Matchers {
            matchers,
            or_matchers,
        } = &vs.matchers;
        assert!(or_matchers.is_empty(), "`or` matchers in {vs}");
        samples
            .get(name)
            .into_iter()
            .flatten()
            .filter(|(labels, _)| {
                matchers
                    .iter()
                    .filter(|m| m.name != "__name__")
                    .all(|m| m.is_match(labels.get(&m.name).map_or("", String::as_str)))
            })
            .cloned()
            .collect()
    }
}

/// Prometheus' `histogram_quantile` over cumulative buckets (upper bound,
/// count): the bucket the rank falls in, interpolated linearly; the
/// lowest bucket starts at 0; a rank in the `+Inf` bucket answers the
/// highest finite bound.
fn bucket_quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> f64 {
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.len() < 2 || buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    let total = buckets[buckets.len() - 1].1;
    if total == 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let b = buckets
        .iter()
        .position(|(_, count)| *count >= rank)
        .expect("the +Inf bucket holds every sample");
    if b == buckets.len() - 1 {
        return buckets[buckets.len() - 2].0;
    }
    let (start, below) = if b == 0 { (0.0, 0.0) } else { buckets[b - 1] };
    let (end, count) = buckets[b];
    start + (end - start) * ((rank - below) / (count - below))
}
