//! Services and Endpoints.

use crate::cells::{age, items, map_selector, name, none_if_empty};
use crate::{AGE, NAME, Printer, col};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

pub(crate) static SERVICES: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Type",
            "string",
            0,
            "type determines how the Service is exposed.",
        ),
        col(
            "Cluster-IP",
            "string",
            0,
            "clusterIP is the IP address of the service and is usually assigned randomly.",
        ),
        col(
            "External-IP",
            "string",
            0,
            "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
        ),
        col(
            "Port(s)",
            "string",
            0,
            "The list of ports that are exposed by this service.",
        ),
        AGE,
        col(
            "Selector",
            "string",
            1,
            "Route service traffic to pods with label keys and values matching this selector.",
        ),
    ],
    row: service_row,
};

pub(crate) static ENDPOINTS: Printer = Printer {
    columns: &[
        NAME,
        col("Endpoints", "string", 0, "Endpoints of the service"),
        AGE,
    ],
    row: |e, now| vec![name(e), json!(format_endpoints(&e["subsets"])), age(e, now)],
};

fn service_row(s: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = &s["spec"];
    let ty = spec["type"].as_str().unwrap_or("ClusterIP");
    let cluster_ip = none_if_empty(spec["clusterIP"].as_str().unwrap_or("").to_string());
    let ports: Vec<String> = items(&spec["ports"])
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64().filter(|n| *n != 0) {
                Some(np) => format!("{}:{np}/{proto}", p["port"]),
                None => format!("{}/{proto}", p["port"]),
            }
        })
        .collect();
    vec![
        name(s),
        json!(ty),
        json!(cluster_ip),
        json!(external_ips(s, ty)),
        json!(none_if_empty(ports.join(","))),
        age(s, now),
        json!(map_selector(&spec["selector"])),
    ]
}

/// kubectl's External-IP: externalIPs, a load balancer's ingress points, or the external name.
fn external_ips(s: &Value, ty: &str) -> String {
    let spec = &s["spec"];
    let ext_ips: Vec<&str> = items(&spec["externalIPs"])
        .filter_map(Value::as_str)
        .collect();
    match ty {
        "ClusterIP" | "NodePort" => none_if_empty(ext_ips.join(",")),
        "LoadBalancer" => {
            let mut lb: Vec<&str> = items(&s["status"]["loadBalancer"]["ingress"])
                .filter_map(|i| i["ip"].as_str().or(i["hostname"].as_str()))
                .collect();
            lb.extend(ext_ips);
            if lb.is_empty() {
                "<pending>".into()
            } else {
                lb.join(",")
            }
        }
        "ExternalName" => spec["externalName"].as_str().unwrap_or("").to_string(),
        _ => "<unknown>".into(),
    }
}

/// kubectl's formatEndpoints: `ip:port` for each port of each subset, the first three
/// and "+ N more..."; `<none>` without subsets, nothing when none is ready.
fn format_endpoints(subsets: &Value) -> String {
    const MAX: usize = 3;
    let Some(subsets) = subsets.as_array().filter(|s| !s.is_empty()) else {
        return "<none>".into();
    };
    let all: Vec<String> = subsets.iter().flat_map(subset_endpoints).collect();
    let shown = all[..all.len().min(MAX)].join(",");
    if all.len() > MAX {
        format!("{shown} + {} more...", all.len() - MAX)
    } else {
        shown
    }
}

/// Each ready address of a subset with each of its ports (bare addresses without ports).
fn subset_endpoints(ss: &Value) -> Vec<String> {
    let ips: Vec<&str> = items(&ss["addresses"])
        .map(|a| a["ip"].as_str().unwrap_or(""))
        .collect();
    let ports: Vec<i64> = items(&ss["ports"])
        .map(|p| p["port"].as_i64().unwrap_or(0))
        .collect();
    // A headless Service without ports lists bare addresses.
    let per_port: Vec<Option<i64>> = if ports.is_empty() {
        vec![None]
    } else {
        ports.into_iter().map(Some).collect()
    };
    per_port
        .into_iter()
        .flat_map(|port| {
            ips.iter().map(move |ip| match port {
                Some(p) if ip.contains(':') => format!("[{ip}]:{p}"),
                Some(p) => format!("{ip}:{p}"),
                None => ip.to_string(),
            })
        })
        .collect()
}
